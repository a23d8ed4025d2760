//! Shared fixtures of the fuzz targets: the security contexts and the device
//! the real captured datagrams (shared/vectors) verify against, so the seeds
//! reach past the AEAD into the plaintext parser and the request handler.
use ssm_ocf::cred::CredResource;
use ssm_ocf::device::{Channel, Device, DeviceInfo, RequestMeta, Security};
use ssm_ocf::provision::{default_aces, provisioned_state};
use ssm_ocf::ssm::{ReplayFloors, SsmReceiver};
use ssm_ocf::switch::BinarySwitch;
use ssm_ocf::Uuid;
use ssm_oscore::{
    ContextParams, Id, IdContext, RecipientContext, ReplayState, ReplayWindow, SecurityContext,
    SequenceNumber,
};

/// iotivity-lite SSM capture (`iotivity-lite-ssm.json`): the group secret and
/// the client's Sender ID.
pub const IOTIVITY_SECRET: &str =
    "b196b62da875f2145c72052479e966b53f451116787a1299ae1ac53f97c0a283";
/// The client's kid in that capture.
pub const IOTIVITY_KID: &str = "029e1b4b90f1cd";
/// The client's credential subject in that capture.
pub const IOTIVITY_CLIENT: &str = "029e1b4b-90f1-cd02-9e1b-4b90f1cd0000";
/// The device's owner (any fixed UUID).
pub const OWNER: Uuid = Uuid::from_u128(0x0b7_0000_0000_0000_0000_0000_0000_0001);
/// The light's UUID.
pub const LIGHT: Uuid = Uuid::from_u128(0x11_0000_0000_0000_0000_0000_0000_0001);

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("fixture hex")
}

/// The recipient context of the iotivity-lite capture's SSM group.
pub fn iotivity_recipient() -> RecipientContext {
    RecipientContext::derive(
        &h(IOTIVITY_SECRET),
        None,
        None,
        Id::new(&h(IOTIVITY_KID)).unwrap(),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

/// The server contexts of RFC 8613 Appendix C.4, C.5 and C.6.
pub fn rfc8613_servers() -> Vec<SecurityContext> {
    let secret = h("0102030405060708090a0b0c0d0e0f10");
    let salt = h("9e7ca92223786340");
    let ctx = |salt: Option<&[u8]>, idc: Option<&str>, sid: &str, rid: &str| {
        SecurityContext::derive(
            &ContextParams {
                master_secret: &secret,
                master_salt: salt,
                id_context: idc.map(|c| IdContext::new(&h(c)).unwrap()),
                sender_id: Id::new(&h(sid)).unwrap(),
                recipient_id: Id::new(&h(rid)).unwrap(),
            },
            SequenceNumber::volatile(0),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    };
    vec![
        ctx(Some(&salt), None, "01", ""),
        ctx(None, None, "01", "00"),
        ctx(Some(&salt), Some("37cbf3210017a2d3"), "01", ""),
    ]
}

/// A light as `ssm device` runs it after provisioning: owned, RFNOP, the
/// capture's SSM server credential (credtype 256) for its client plus a
/// pair-wise credential (credtype 64), default ACEs, a binary switch at
/// `/lights` (the capture's href) and at `/BinarySwitchResURI`, both
/// accepting SSM.
pub fn light() -> (Device, SsmReceiver) {
    let creds = CredResource::from_json(&format!(
        r#"{{"creds": [
  {{"credid": 1, "credtype": 256, "subjectuuid": "{IOTIVITY_CLIENT}",
    "privatedata": {{"data": "{IOTIVITY_SECRET}", "encoding": "oic.sec.encoding.raw"}},
    "oscore": {{"recipientid": "{IOTIVITY_KID}"}}}},
  {{"credid": 2, "credtype": 64, "subjectuuid": "{IOTIVITY_CLIENT}",
    "privatedata": {{"data": "0102030405060708090a0b0c0d0e0f100102030405060708090a0b0c0d0e0f10", "encoding": "oic.sec.encoding.raw"}},
    "oscore": {{"senderid": "01010101010101", "recipientid": "02020202020202"}}}}
], "rowneruuid": "{OWNER}"}}"#
    ))
    .expect("fixture creds");
    creds
        .oscore_creds()
        .expect("fixture creds are valid OSCORE credentials");
    let aces = default_aces(&creds, &["/lights", ssm_ocf::switch::HREF], true);
    let mut d = Device::new(DeviceInfo::light("fuzz", LIGHT));
    d.add_resource("/lights", Box::new(BinarySwitch::default()), true);
    d.add_resource(
        ssm_ocf::switch::HREF,
        Box::new(BinarySwitch::default()),
        true,
    );
    d.set_security(provisioned_state(LIGHT, OWNER, creds, aces));
    let rx = receiver(&d);
    assert_eq!(rx.len(), 1, "fixture: one SSM recipient context");
    (d, rx)
}

/// The first captured SSM datagram (`iotivity-lite-ssm.json`, ssn 0).
pub const CAPTURED_UPDATE: &str = "580238144ccf431a636fe4b8990900029e1b4b90f1cdfff1eeed527e41e09783303c698216de8d52b6277146a8cce42f2236bf375d9c6fa0254d80aeb74bc0";

/// Panics unless the fixture light accepts and applies the captured
/// datagram: run once per fuzzing process, so a fixture that silently
/// stopped matching the seeds (fuzzing only the reject path) is caught.
pub fn self_check() {
    let (mut d, mut rx) = light();
    let mut b = h(CAPTURED_UPDATE);
    let a = rx
        .receive(&mut b)
        .expect("fixture: captured datagram verifies")
        .accepted;
    assert_eq!(
        d.apply_ssm(&a)
            .expect("fixture: captured datagram is applied"),
        Some("/lights".to_string())
    );
}

/// The SSM receiver of `d`'s current credentials (as the runtime rebuilds
/// it after a cred change).
pub fn receiver(d: &Device) -> SsmReceiver {
    let creds = d
        .security()
        .map(|s| s.cred.oscore_creds().unwrap_or_default())
        .unwrap_or_default();
    SsmReceiver::new(&creds, ReplayFloors::default())
        .unwrap_or_else(|_| SsmReceiver::new(&[], ReplayFloors::default()).expect("empty receiver"))
}

/// How one fuzzed datagram reached the device: byte 0 of each record.
pub fn meta(mode: u8) -> RequestMeta {
    let client: Uuid = IOTIVITY_CLIENT.parse().unwrap();
    let security = match (mode >> 1) & 3 {
        0 => Security::None,
        1 => Security::Dtls {
            subject: Some(OWNER),
        },
        2 => Security::Oscore {
            subject: Some(client),
            credtype: ssm_ocf::cred::CredType::PairwiseOscore,
        },
        _ => Security::Dtls {
            subject: Some(client),
        },
    };
    // The channel matches the security; the port varies with the mode so
    // the observer quotas per source are reached too.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5683 + u16::from(mode >> 3)));
    let peer = match security {
        Security::None => Channel::Plain(addr),
        Security::Oscore { .. } => Channel::Oscore {
            addr,
            binding: ssm_oscore::RequestBinding {
                kid: ssm_oscore::Id::new(&[0x01]).expect("1-byte kid"),
                partial_iv: ssm_oscore::PartialIv::from_u64(u64::from(mode)).expect("small PIV"),
                kid_context: None,
                observe: true,
            },
        },
        _ => Channel::Dtls(addr),
    };
    RequestMeta {
        multicast: mode & 1 == 1,
        security,
        peer,
    }
}

#[cfg(test)]
mod tests {
    /// The fixtures are what the seeds need: the captured SSM datagrams
    /// verify, pass the ACL and switch the light, so fuzzing starts deep.
    #[test]
    fn captured_datagrams_reach_the_resource() {
        let (mut d, mut rx) = super::light();
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/vectors/iotivity-lite-ssm.json"
            ))
            .or_else(|_| std::fs::read_to_string("/work/shared/vectors/iotivity-lite-ssm.json"))
            .unwrap(),
        )
        .unwrap();
        let mut applied = 0;
        for dg in v["datagrams"].as_array().unwrap() {
            let mut b = hex::decode(dg["hex"].as_str().unwrap()).unwrap();
            let a = rx
                .receive(&mut b)
                .expect("captured datagram verifies")
                .accepted;
            d.apply_ssm(&a).expect("and is applied");
            applied += 1;
        }
        assert_eq!(applied, 6);
        let mut r = super::iotivity_recipient();
        let mut b = hex::decode(v["datagrams"][0]["hex"].as_str().unwrap()).unwrap();
        r.unprotect_request(&mut b).unwrap();
        for (i, mut s) in super::rfc8613_servers().into_iter().enumerate() {
            let rfc: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string("/work/shared/vectors/rfc8613.json")
                    .or_else(|_| {
                        std::fs::read_to_string(concat!(
                            env!("CARGO_MANIFEST_DIR"),
                            "/../../shared/vectors/rfc8613.json"
                        ))
                    })
                    .unwrap(),
            )
            .unwrap();
            let mut b = hex::decode(
                rfc["protect_request"][i]["protected_request"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            s.recipient.unprotect_request(&mut b).unwrap();
        }
    }
}
