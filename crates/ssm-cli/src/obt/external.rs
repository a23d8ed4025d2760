//! `ssm obt external add|material|remove`: external members of
//! `group-oscore` groups (RFC 10021 group-mode members that are not OCF
//! devices). Open the store, call the engine, print (`--json`: the same
//! field names as the other commands; the material document is the
//! contract external members code against).
use super::args::ExternalCmd;
use super::{engine_err, progress, report_sync};
use anyhow::{Context, Result};
use ssm_obt::engine::{self, Material};
use ssm_obt::store::Store;
use ssm_obt::DeviceRole;
use std::path::Path;
use zeroize::Zeroizing;

/// Runs `ssm obt external …`.
pub(super) async fn run(path: &Path, cmd: ExternalCmd, json: bool) -> Result<bool> {
    let mut s = Store::open(path)?;
    match cmd {
        ExternalCmd::Add {
            name,
            role,
            authcred,
        } => add(&mut s, &name, &role, &authcred, json),
        ExternalCmd::Material { name, group, out } => {
            material(&mut s, &name, &group, out.as_deref(), json)
        }
        ExternalCmd::Remove { name, work } => {
            let r = engine::external_remove(
                &mut s,
                &name,
                &work.link.reach(),
                work.jobs as usize,
                &progress(!json),
            )
            .await
            .map_err(engine_err)?;
            let d = &r.device;
            if !json {
                println!("forgot the external member {} ({})", d.name, d.uuid);
                for (g, e) in &r.rekeyed {
                    println!(
                        "group {g} rekeyed to epoch {e} (the other external members of {g} must fetch their material again)"
                    );
                }
            }
            let rekeyed: Vec<_> = r
                .rekeyed
                .iter()
                .map(|(g, e)| serde_json::json!({"group": g, "epoch": e}))
                .collect();
            Ok(report_sync(
                &r.synced,
                json,
                serde_json::json!({"uuid": d.uuid, "name": d.name, "role": d.role.as_str(), "removed": true, "rekeyed": rekeyed}),
            ))
        }
    }
}

fn add(s: &mut Store, name: &str, role: &str, file: &Path, json: bool) -> Result<bool> {
    let role: DeviceRole = role.parse().map_err(|e| crate::usage!("--role: {e}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ccs = engine::read_authcred(&bytes)
        .map_err(|e| crate::usage!("--authcred {}: {e}", file.display()))?;
    let d = engine::external_add(s, name, role, &ccs).map_err(engine_err)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"uuid": d.uuid, "name": d.name, "role": d.role.as_str(),
                "state": d.state.as_str(), "authcred": hex::encode(&ccs)})
        );
    } else {
        println!(
            "registered the external {} {} ({}): add it to a group-oscore group \
             (`ssm obt group add GROUP {}` for a light, `ssm obt ssm grant {} --group GROUP` for a switch), \
             then give it `ssm obt external material {} --group GROUP`",
            d.role, d.name, d.uuid, d.name, d.name, d.name
        );
    }
    Ok(true)
}

/// The material document (one JSON object; the master secret only in
/// zeroized memory).
fn document(m: &Material) -> Zeroizing<String> {
    let peers: serde_json::Map<String, serde_json::Value> = m
        .peers
        .iter()
        .map(|(sid, ccs)| (sid.clone(), serde_json::Value::from(hex::encode(ccs))))
        .collect();
    let public = serde_json::json!({
        "group": m.group, "member": m.member, "role": m.role.as_str(), "epoch": m.epoch,
        "gid": hex::encode(m.gid), "salt": m.salt.as_ref().map(hex::encode),
        "sender_id": m.sender_id, "aeadalg": m.aead_alg, "encalg": m.enc_alg,
        "signalg": m.sign_alg, "hkdf": "sha256", "gm_cred": hex::encode(&m.gm_cred),
        "own_ccs": hex::encode(&m.own_ccs), "peers": peers,
    })
    .to_string();
    let secret = Zeroizing::new(hex::encode(&m.secret[..]));
    let mut out = Zeroizing::new(String::with_capacity(public.len() + 96));
    out.push_str("{\"secret\":\"");
    out.push_str(&secret);
    out.push_str("\",");
    out.push_str(&public[1..]);
    out
}

fn material(
    s: &mut Store,
    name: &str,
    group: &str,
    out: Option<&Path>,
    json: bool,
) -> Result<bool> {
    let m = engine::material(s, name, group).map_err(engine_err)?;
    let doc = document(&m);
    let Some(file) = out else {
        println!("{}", &*doc);
        return Ok(true);
    };
    let mut bytes = Zeroizing::new(doc.as_bytes().to_vec());
    bytes.push(b'\n');
    ssm_runtime::store::atomic_write(file, &bytes)
        .with_context(|| format!("cannot write {}", file.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"group": m.group, "member": m.member, "epoch": m.epoch,
                "sender_id": m.sender_id, "out": file})
        );
    } else {
        println!(
            "wrote the material of {} in group {} (epoch {}, Sender ID {}) to {} (0600: it holds the \
             master secret); fetch it again after every rekey of {}",
            m.member,
            m.group,
            m.epoch,
            m.sender_id,
            file.display(),
            m.group
        );
    }
    Ok(true)
}
