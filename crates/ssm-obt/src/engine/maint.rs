//! Maintenance: renaming a device (the domain and the device's own `n`)
//! and inspecting what a device holds against what the domain says.
use super::EngineError;
use crate::plan::desired;
use crate::store::{DeviceRecord, Store};
use ssm_ocf::onboarding::Comparison;
use ssm_runtime::owner_session::OwnerSession;
use std::time::Duration;

/// The device configuration resource whose `n` the owner may UPDATE
/// (OCF `oic.wk.con`); the device reflects it in `/oic/d`.
pub const CON_HREF: &str = "/oic/con";

/// What `rename` did.
#[derive(Debug)]
pub struct Renamed {
    /// The device as it was.
    pub before: DeviceRecord,
    /// The new name.
    pub name: String,
    /// Whether the device's own name (`/oic/con` `n`) was updated, else why not.
    pub device: Result<(), String>,
}

/// Renames a device: in the domain (refused if another device has the
/// name), then on the device (UPDATE of `n` on `/oic/con` over the owner
/// session; best effort: the domain's name is the one the OBT uses).
pub async fn rename(
    s: &mut Store,
    old: &str,
    new: &str,
    timeout: Duration,
) -> Result<Renamed, EngineError> {
    let (obt, _) = s.obt()?;
    let before = s.rename(old, new)?;
    let psk = s.owner_psk(&before.uuid)?;
    let device = match ssm_runtime::netif::parse_ep(&before.endpoint) {
        _ if before.state == crate::DeviceState::External => Err(EXTERNAL.into()),
        Ok(peer) => set_device_name(peer, obt, &psk, new, timeout).await,
        Err(e) => Err(e.to_string()),
    };
    if device.is_ok() {
        s.touch(&before.uuid, None)?;
    }
    Ok(Renamed {
        before,
        name: new.into(),
        device,
    })
}

/// Sets the device's own name (`n` of `/oic/con`, shown in its `/oic/d`)
/// over an owner session.
pub(super) async fn set_device_name(
    peer: std::net::SocketAddr,
    obt: uuid::Uuid,
    psk: &[u8; 16],
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut sess = OwnerSession::open(peer, obt, psk, timeout)
        .await
        .map_err(|e| format!("not reachable: {e}"))?;
    let body = ssm_ocf::cbor::map([("n", ciborium::Value::Text(name.into()))]);
    let r = sess.post(CON_HREF, &body).await;
    sess.close().await;
    match r {
        Ok(c) if c.class() == 2 => Ok(()),
        Ok(ssm_coap::Code::NOT_FOUND) => Err(NO_CON.into()),
        Ok(c) => Err(format!("it answered {c} to the UPDATE of /oic/con")),
        Err(e) => Err(e.to_string()),
    }
}

/// Why an external member's own name was not changed.
pub const EXTERNAL: &str =
    "an external member (never reached by the OBT): renamed in the domain only";

/// Why a device's own name was not changed: it has no `/oic/con`.
pub const NO_CON: &str = "it has no /oic/con (an older ssm device): renamed in the domain only";

/// What `inspect` read from a device.
#[derive(Debug)]
pub struct Inspection {
    /// The device.
    pub record: DeviceRecord,
    /// Its `/oic/sec/pstat` and `/oic/sec/doxm` as it answered them.
    pub pstat: ciborium::Value,
    /// Its `/oic/sec/doxm`.
    pub doxm: ciborium::Value,
    /// Its credentials (without private data) and ACEs against the domain's.
    pub comparison: Comparison,
}

/// Reads a device's `/oic/sec/cred` (the device never returns private
/// data), `/oic/sec/acl2`, `pstat` and `doxm` over the owner session and
/// compares them with what the domain says it should hold.
pub async fn inspect(
    s: &Store,
    device: &str,
    timeout: Duration,
) -> Result<Inspection, EngineError> {
    let (obt, _) = s.obt()?;
    let record = s.device(device)?;
    if record.state == crate::DeviceState::External {
        return Err(EngineError::IsExternal(record.name));
    }
    let psk = s.owner_psk(&record.uuid)?;
    let want = desired(s, &record.uuid)?;
    let peer = ssm_runtime::netif::parse_ep(&record.endpoint)?;
    let mut sess = OwnerSession::open(peer, obt, &psk, timeout).await?;
    let mut answers = Vec::new();
    for href in [
        "/oic/sec/cred",
        "/oic/sec/acl2",
        "/oic/sec/pstat",
        "/oic/sec/doxm",
    ] {
        match sess.get(href).await {
            Ok(Ok(v)) => answers.push(v),
            Ok(Err(code)) => {
                sess.close().await;
                return Err(EngineError::Task(format!(
                    "{href}: the device answered {code}"
                )));
            }
            Err(e) => {
                sess.close().await;
                return Err(e.into());
            }
        }
    }
    sess.close().await;
    let comparison =
        ssm_ocf::onboarding::compare(&answers[0], &answers[1], &want.creds, &want.aces)
            .ok_or_else(|| EngineError::Task("cannot decode its /oic/sec/cred or acl2".into()))?;
    let doxm = answers.pop().unwrap_or(ciborium::Value::Null);
    let pstat = answers.pop().unwrap_or(ciborium::Value::Null);
    Ok(Inspection {
        record,
        pstat,
        doxm,
        comparison,
    })
}
