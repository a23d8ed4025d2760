//! What a device keeps of itself besides its security state: the name its
//! owner gave it (`device.json`), and the application resources' state
//! kept across restarts
//! (`DeviceConfig::persist_resources`): after each change the
//! representations go to one writer task, which replaces `resources.json`
//! atomically (0600) with the latest one. Changes that come faster than
//! the disk are coalesced (the file only ever needs the last state), and
//! no write holds up the request that made the change.
use super::{DeviceEvent, State};
use crate::state_dir::StateDir;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// href → representation (JSON), as `resources.json` holds it.
pub(super) type Snapshot = BTreeMap<String, serde_json::Value>;

/// The device's representations now.
fn snapshot(st: &State) -> Snapshot {
    st.device
        .hrefs()
        .filter_map(|h| {
            let rep = st.device.representation(h)?;
            Some((h.to_string(), ssm_ocf::cbor::to_json(&rep)))
        })
        .collect()
}

/// A resource changed: hand the device's representations to the writer.
pub(super) fn changed(st: &State) {
    if let Some(tx) = &st.persist.resources {
        tx.send_replace(Some(snapshot(st)));
    }
}

/// At start, before the device is ready: the state it starts in (after
/// its power-on setting) is its last state from now on, on disk before
/// anyone can see it.
pub(super) fn started(st: &State) {
    if st.persist.resources.is_some() {
        if let Err(e) = st.persist.dir.save_resources(&snapshot(st)) {
            tracing::error!(error = %e, "cannot persist the resources' state");
        }
    }
}

/// Writes the latest snapshot whenever there is a new one.
pub(super) async fn writer(dir: StateDir, mut rx: watch::Receiver<Option<Snapshot>>) {
    while rx.changed().await.is_ok() {
        let Some(snapshot) = rx.borrow_and_update().clone() else {
            continue;
        };
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || d.save_resources(&snapshot)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the resources' state"),
            Err(e) => tracing::error!(error = %e, "resource state writer"),
        }
    }
}

/// The owner renamed the device: the name is persisted in `device.json`
/// (a failed write is logged; the device answers with the new name until
/// it restarts).
pub(super) fn renamed(
    st: &mut State,
    name: String,
    events: &tokio::sync::broadcast::Sender<DeviceEvent>,
) {
    let di = st.device.info().di;
    match st.persist.dir.save_name(&name, di) {
        Ok(()) => tracing::info!(%name, "renamed by the owner"),
        Err(e) => tracing::error!(error = %e, "cannot persist the new device name"),
    }
    let _ = events.send(DeviceEvent::Renamed { name });
}
