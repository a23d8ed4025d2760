//! One multicast socket per group for all the devices of a process that
//! share a [`GroupHub`] (a bridge or simulator hosting many lights;
//! `DeviceConfig::group_hub`). Without it every device joins the group on
//! its own socket, and the kernel copies each datagram to every one of
//! them and wakes every device: 1,000 lights of 50 zones all pay for each
//! zone's command. With it the datagram is received once; a device that
//! has no recipient context for its kid has it counted as an
//! [`DropReason::UnknownKid`] drop on the spot (no copy, no wake-up), and
//! only the others get it on their own queue, where the usual receive path
//! (verification, floor, apply, in order) runs as before. Plain requests
//! (discovery) go to every device.
use super::multicast::drop_one;
use super::{DeviceEvent, State};
use ssm_ocf::ssm::DropReason;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

/// Datagrams queued per device before the hub drops more (as a full
/// socket buffer would).
const QUEUE: usize = 64;

/// A datagram and its source.
pub(super) type Datagram = (Vec<u8>, SocketAddr);

struct Member {
    state: Weak<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
    tx: mpsc::Sender<Datagram>,
}

struct Group {
    members: Mutex<Vec<Member>>,
    task: tokio::task::JoinHandle<()>,
}

/// The group sockets shared by the devices of a process.
#[derive(Default)]
pub struct GroupHub {
    groups: Mutex<HashMap<(u32, SocketAddr), Arc<Group>>>,
}

impl std::fmt::Debug for GroupHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.groups.lock().map(|g| g.len()).unwrap_or(0);
        write!(f, "GroupHub({n} groups)")
    }
}

impl GroupHub {
    /// An empty hub.
    pub fn new() -> Arc<GroupHub> {
        Arc::new(GroupHub::default())
    }

    /// The queue of a device for the group `group` on interface `ifindex`;
    /// `open` joins the group's socket the first time.
    pub(super) fn subscribe(
        &self,
        ifindex: u32,
        group: SocketAddr,
        open: impl FnOnce() -> std::io::Result<UdpSocket>,
        state: &Arc<Mutex<State>>,
        events: &broadcast::Sender<DeviceEvent>,
    ) -> std::io::Result<mpsc::Receiver<Datagram>> {
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| std::io::Error::other("group hub poisoned"))?;
        let g = match groups.get(&(ifindex, group)) {
            Some(g) => g.clone(),
            None => {
                let socket = open()?;
                let g = Arc::new_cyclic(|weak: &Weak<Group>| Group {
                    members: Mutex::new(Vec::new()),
                    task: tokio::spawn(receive_loop(socket, weak.clone())),
                });
                groups.insert((ifindex, group), g.clone());
                g
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        g.members
            .lock()
            .map_err(|_| std::io::Error::other("group hub poisoned"))?
            .push(Member {
                state: Arc::downgrade(state),
                events: events.clone(),
                tx,
            });
        Ok(rx)
    }
}

impl Drop for GroupHub {
    fn drop(&mut self) {
        if let Ok(groups) = self.groups.lock() {
            for g in groups.values() {
                g.task.abort();
            }
        }
    }
}

/// Receives on a group socket and hands each datagram to the devices that
/// may accept it.
async fn receive_loop(socket: UdpSocket, group: Weak<Group>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Some(group) = group.upgrade() else { return };
        let datagram = &buf[..n];
        let kid = ssm_ocf::ssm::datagram_kid(datagram);
        let Ok(mut members) = group.members.lock() else {
            return;
        };
        // A device that stopped (its state gone, its queue closed) leaves.
        members.retain(|m| {
            let Some(state) = m.state.upgrade() else {
                return false;
            };
            if let Some(kid) = &kid {
                let Ok(mut st) = state.lock() else {
                    return false;
                };
                if !st.oscore.ssm.admits(kid) {
                    drop_one(&mut st, DropReason::UnknownKid, &m.events);
                    return true;
                }
            }
            !matches!(
                m.tx.try_send((datagram.to_vec(), peer)),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}
