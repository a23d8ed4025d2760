//! SECURITY-REVIEW F5 at the model level: an owner transfer is bound to the
//! owner-transfer session that first writes. The end of another session
//! (an abandoned attempt) leaves it alone, other sessions cannot write
//! while it runs, and `owned` / the move out of RFOTM need an owner
//! (`devowneruuid` and its credential).
use ciborium::Value;
use ssm_coap::Code;
use ssm_ocf::cbor;
use ssm_ocf::device::{Device, DeviceInfo, RequestMeta, Security};
use ssm_ocf::message;
use ssm_ocf::onboarding::{owner_transfer, Channel, Sequence};
use ssm_ocf::security::otm::OtmKeys;
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::{OwnerTransferEnd, SecurityState};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use std::sync::Arc;

fn keys(b: u8) -> Arc<OtmKeys> {
    Arc::new(OtmKeys {
        master_secret: [b; 48],
        client_random: [b ^ 1; 32],
        server_random: [b ^ 2; 32],
        key_block_len: 96,
    })
}

fn otm(session: u64) -> Security {
    Security::OwnerTransfer {
        keys: keys(session as u8),
        session,
    }
}

fn new_light(id: Uuid) -> Device {
    let mut d = Device::new(DeviceInfo::light("l", id));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(SecurityState::new(id));
    d
}

fn send(d: &mut Device, req: &ssm_coap::Message, security: Security) -> ssm_coap::Message {
    d.handle(
        req,
        &RequestMeta {
            multicast: false,
            security,
            peer: ssm_ocf::device::Channel::Dtls(([127, 0, 0, 1], 40000).into()),
        },
    )
    .response
    .expect("a response")
}

/// Runs the next steps of `seq` in `session` until (and including) the
/// step named `until` (None: to the end); every one must succeed.
fn steps(d: &mut Device, seq: &mut Sequence, session: u64, until: Option<&str>) {
    while let Some(step) = seq.next_step().cloned() {
        let security = match step.channel {
            Channel::Plain => Security::None,
            _ => otm(session),
        };
        let r = send(d, &step.request, security);
        seq.on_response(&r)
            .unwrap_or_else(|e| panic!("{}: {e}", step.what));
        if Some(step.what) == until {
            return;
        }
    }
}

/// Ends session `session` as the runtime does (clone, end, set back).
fn end(d: &mut Device, session: u64) -> OwnerTransferEnd {
    let mut sec = d.security().unwrap().clone();
    let out = sec.owner_transfer_session_ended(session);
    d.set_security(sec);
    out
}

#[test]
fn an_abandoned_sessions_end_during_another_transfer_leaves_it_alone() {
    let (obt, new_id) = (
        Uuid::from_u128(0x0b7),
        Uuid::from_u128(0x1111_1111_1111_4111_9111_1111_1111_1111),
    );
    let mut d = new_light(Uuid::from_u128(0xfac));
    // Session A (1) stood its PIN handshake and wrote nothing; B (2) runs
    // the transfer up to the owner credential.
    let mut seq = owner_transfer(obt, new_id, (Uuid::from_u128(0xd0), "hall"));
    steps(&mut d, &mut seq, 2, Some("owner credential"));
    assert!(d.security().unwrap().owner_transfer_in_progress());
    // A third session can neither read nor write meanwhile.
    let pstat = message::request(
        ssm_coap::MessageType::Confirmable,
        Code::GET,
        "/oic/sec/pstat",
        None,
    );
    assert_eq!(send(&mut d, &pstat, otm(3)).code, Code::FORBIDDEN);
    // A's idle end: not the transfer, nothing undone.
    assert_eq!(end(&mut d, 1), OwnerTransferEnd::NotTheTransfer);
    assert_eq!(d.security().unwrap().doxm.devowneruuid, obt);
    // B finishes; the device is owned by the OBT with B's owner PSK.
    steps(&mut d, &mut seq, 2, None);
    assert!(seq.is_done());
    let s = d.security().unwrap();
    assert_eq!(
        (
            s.doxm.owned,
            s.pstat.dos,
            s.device_uuid(),
            s.doxm.devowneruuid
        ),
        (true, Dos::Rfnop, new_id, obt)
    );
    assert_eq!(
        s.owner_psk(),
        Some(keys(2).owner_psk(&obt, &new_id).to_vec())
    );
    assert_eq!(end(&mut d, 2), OwnerTransferEnd::Completed);
    assert!(!d.security().unwrap().owner_transfer_in_progress());
    assert_eq!(d.security().unwrap().doxm.devowneruuid, obt);
}

#[test]
fn only_the_writing_session_can_undo_and_others_wait_for_it() {
    let (obt, new_id) = (
        Uuid::from_u128(0x0b7),
        Uuid::from_u128(0x1212_1212_1212_4212_9212_1212_1212_1212),
    );
    let factory = Uuid::from_u128(0xfad);
    let mut d = new_light(factory);
    // A (1) writes two steps, then its OBT goes away.
    let mut a = owner_transfer(obt, new_id, (Uuid::from_u128(0xd0), "hall"));
    steps(&mut d, &mut a, 1, Some("doxm devowneruuid"));
    // B (2) is refused while A's transfer is in progress.
    let mut b = owner_transfer(obt, new_id, (Uuid::from_u128(0xd0), "hall"));
    b.on_response(&send(
        &mut d,
        &b.next_step().unwrap().request.clone(),
        Security::None,
    ))
    .unwrap();
    let r = send(&mut d, &b.next_step().unwrap().request.clone(), otm(2));
    assert_eq!(r.code, Code::FORBIDDEN);
    // B's end does not touch A's writes; A's end undoes them.
    assert_eq!(end(&mut d, 2), OwnerTransferEnd::NotTheTransfer);
    assert_eq!(d.security().unwrap().doxm.devowneruuid, obt);
    assert_eq!(end(&mut d, 1), OwnerTransferEnd::Undone);
    let mut fresh = SecurityState::new(factory);
    fresh.reset();
    assert_eq!(d.security().unwrap(), &fresh);
    // A new attempt (3) then completes.
    let mut c = owner_transfer(obt, new_id, (Uuid::from_u128(0xd0), "hall"));
    steps(&mut d, &mut c, 3, None);
    assert!(c.is_done());
    assert_eq!(
        d.security().unwrap().owner_psk(),
        Some(keys(3).owner_psk(&obt, &new_id).to_vec())
    );
}

#[test]
fn owned_and_leaving_rfotm_need_the_owner_credential() {
    let obt = Uuid::from_u128(0x0b7);
    let mut d = new_light(Uuid::from_u128(0xfae));
    let post = |href: &str, body: Value| {
        let mut m = message::request(ssm_coap::MessageType::Confirmable, Code::POST, href, None);
        message::set_payload(&mut m, &body);
        m
    };
    let owned = post("/oic/sec/doxm", cbor::map([("owned", Value::Bool(true))]));
    let rfpro = post(
        "/oic/sec/pstat",
        cbor::map([("dos", cbor::map([("s", Value::Integer(2.into()))]))]),
    );
    // Nothing set: no owner.
    assert_eq!(send(&mut d, &owned, otm(1)).code, Code::FORBIDDEN);
    assert_eq!(send(&mut d, &rfpro, otm(1)).code, Code::FORBIDDEN);
    // devowneruuid alone is not enough.
    let owner = post(
        "/oic/sec/doxm",
        cbor::map([("devowneruuid", Value::Text(obt.to_string()))]),
    );
    assert_eq!(send(&mut d, &owner, otm(1)).code, Code::CHANGED);
    assert_eq!(send(&mut d, &owned, otm(1)).code, Code::FORBIDDEN);
    // An owner credential for someone else is not enough either.
    let cred = |subject: Uuid| {
        post(
            "/oic/sec/cred",
            cbor::map([(
                "creds",
                Value::Array(vec![cbor::map([
                    ("credtype", Value::Integer(1.into())),
                    ("subjectuuid", Value::Text(subject.to_string())),
                    (
                        "privatedata",
                        cbor::map([
                            ("encoding", Value::Text("oic.sec.encoding.raw".into())),
                            ("data", Value::Bytes(vec![])),
                        ]),
                    ),
                ])]),
            )]),
        )
    };
    assert_eq!(
        send(&mut d, &cred(Uuid::from_u128(9)), otm(1)).code,
        Code::CHANGED
    );
    assert_eq!(send(&mut d, &owned, otm(1)).code, Code::FORBIDDEN);
    assert!(!d.security().unwrap().doxm.owned);
    // With the owner's credential: owned, then RFPRO.
    assert_eq!(send(&mut d, &cred(obt), otm(1)).code, Code::CHANGED);
    assert_eq!(send(&mut d, &owned, otm(1)).code, Code::CHANGED);
    assert_eq!(send(&mut d, &rfpro, otm(1)).code, Code::CHANGED);
    assert_eq!(d.security().unwrap().pstat.dos, Dos::Rfpro);
}
