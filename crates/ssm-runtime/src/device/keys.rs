//! The device's own Group OSCORE key pair (RFC 10021 group mode).
use super::DeviceError;
use crate::state_dir::StateDir;
use ssm_ocf::device::Device;

/// The device's own Group OSCORE key pair, made on first start in its
/// state dir (0600); the owner (the Group Manager) reads only the public
/// credential (CCS) from the device.
pub(super) fn own_key_pair(device: &mut Device, dir: &StateDir) -> Result<(), DeviceError> {
    let key = dir.load_or_create_signing_key()?;
    device.set_auth_cred(
        ssm_ocf::group_cred::ccs_of_ed25519(&ssm_ocf::group_cred::public_key(&key)).to_vec(),
    );
    Ok(())
}
