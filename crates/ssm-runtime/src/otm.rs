//! The owner-transfer keys a Random PIN DTLS session exports, as the OCF
//! model derives the owner PSK from them; shared by the device (server) and
//! the onboarding tool (client) side.

/// Converts a session's exported keys for the owner-PSK derivation (the
/// result wipes itself on drop).
pub fn otm_keys(k: &ssm_dtls::KeyMaterial) -> ssm_ocf::security::otm::OtmKeys {
    ssm_ocf::security::otm::OtmKeys {
        master_secret: *k.master_secret,
        client_random: k.client_random,
        server_random: k.server_random,
        key_block_len: ssm_ocf::security::otm::key_block_len(&k.cipher),
    }
}
