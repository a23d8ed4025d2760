//! Your own SSM-enabled device type: a dimmer (`oic.r.light.dimming`).
//!
//! The device type is the `Resource` impl below; the device, the security
//! resources, OSCORE and multicast come from the library. `main` starts
//! one dimmer on loopback with credentials for a group of one switch, then
//! plays the switch: one OSCORE-protected multicast UPDATE sets it to 42 %.
//!
//! Run: `cargo run -p ssm-runtime --example dimmer` (IPv4 multicast on lo).
use ciborium::Value;
use ssm_ocf::resource::{Resource, UpdateError, IF_A, IF_BASELINE};

/// The device type: one integer property, 0 to 100.
struct Dimmer(i64);

impl Resource for Dimmer {
    fn resource_types(&self) -> &[&'static str] {
        &["oic.r.light.dimming"]
    }
    fn interfaces(&self) -> &[&'static str] {
        &[IF_A, IF_BASELINE]
    }
    fn properties(&self) -> Vec<(&'static str, Value)> {
        vec![("dimmingSetting", Value::Integer(self.0.into()))]
    }
    fn update(&mut self, props: &[(String, Value)]) -> Result<bool, UpdateError> {
        let mut new = self.0; // check everything before changing anything
        for (k, v) in props {
            match (
                k.as_str(),
                v.as_integer().and_then(|i| i64::try_from(i).ok()),
            ) {
                ("dimmingSetting", Some(x)) if (0..=100).contains(&x) => new = x,
                ("dimmingSetting", _) => return Err(UpdateError::BadValue(k.clone())),
                _ => return Err(UpdateError::UnknownProperty(k.clone())),
            }
        }
        let changed = new != self.0;
        self.0 = new;
        Ok(changed)
    }
}

// Everything below is the demo around it.
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state};
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent};
use ssm_runtime::store::FileSequenceStore;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("ssm-dimmer-{}", std::process::id()));
    let port = 20_000 + (std::process::id() % 20_000) as u16; // not 5683: a sandbox of its own
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    // Credentials as an onboarding tool would provision them (see `ssm obt`).
    let (lights, switches) = generate_group(1, 1, uuid::Uuid::new_v4(), &mut rng);

    let mut device = Device::new(DeviceInfo::light("dimmer", lights[0].uuid));
    device.add_resource("/dim", Box::new(Dimmer(0)), true); // true: accepts SSM
    let aces = default_aces(&lights[0].creds, &["/dim"], true);
    let owner = uuid::Uuid::new_v4();
    device.set_security(provisioned_state(
        lights[0].uuid,
        owner,
        lights[0].creds.clone(),
        aces,
    ));
    let mut config = DeviceConfig::loopback(dir.join("dimmer"));
    config.port = port;
    let dimmer = start(device, &config).await?;
    let mut events = dimmer.events.subscribe();

    // The switch: its SSM client credential (credtype 128) and one datagram.
    let creds = switches[0].creds.oscore_creds()?;
    let cred = creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .ok_or("no SSM credential")?;
    let mut switch = SsmSender::new(cred, FileSequenceStore::new(dir.join("switch.ssn")))?;
    let scope = MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    };
    let targets = MulticastTargets::open(&scope)?;
    let body = ssm_ocf::cbor::map([("dimmingSetting", Value::Integer(42.into()))]);
    switch.send(&targets, "/dim", &body, true).await?;

    let applied = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(DeviceEvent::SsmApplied { href, state, .. }) = events.recv().await {
                return (href, state);
            }
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match applied {
        Ok((href, state)) if state["dimmingSetting"] == 42 => {
            println!("SSM UPDATE applied: {href} is now {state}");
            Ok(())
        }
        other => Err(format!("the dimmer did not apply the update: {other:?}").into()),
    }
}
