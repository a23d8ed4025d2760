//! The subcommands of `ssm client`, one function each.
use super::confirm::confirm_lights;
use super::{connect, pairwise_client, parse_ep, Conn, Net, OnOff, Secured};
use crate::state::{load_creds, load_identity};
use anyhow::{anyhow, bail, Context, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType, OptionNumber};
use ssm_ocf::cred::{CredType, OscoreCred};
use ssm_ocf::switch::HREF;
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{
    describe, discover as discover_links, request, socket_for, MulticastTargets, SsmSender,
};
use ssm_runtime::group_client::MulticastSender;
use std::path::Path;
use std::time::Duration;

/// `ssm client discover`.
pub(super) async fn discover(net: &Net, rt: &str, wait_ms: u64, json: bool) -> Result<bool> {
    let targets = MulticastTargets::open(&net.scope())?;
    let found = discover_links(
        &targets,
        Some(&format!("rt={rt}")),
        Duration::from_millis(wait_ms),
    )
    .await?;
    if let Some(hint) = crate::config::lo_hint(&net.ifaces, found.len()) {
        eprintln!("warning: {hint}");
    }
    let mut out = Vec::new();
    for (from, links) in &found {
        for l in links {
            out.push(serde_json::json!({
                "from": from.to_string(), "di": l.device_id(), "href": l.href, "rt": l.rt,
                "ssm": l.accepts_ssm(), "eps": l.eps.iter().map(|e| e.ep.clone()).collect::<Vec<_>>(),
            }));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"devices": found.len(), "links": out})
        );
    } else {
        println!("{} device(s) answered", found.len());
        for l in &out {
            println!(
                "  {}  {}  ssm={}  {}",
                l["di"].as_str().unwrap_or("?"),
                l["href"].as_str().unwrap_or(""),
                l["ssm"],
                l["eps"]
            );
        }
    }
    Ok(!found.is_empty())
}

/// `ssm client get EP`.
pub(super) async fn get(state_dir: &Path, ep: &str, href: &str, json: bool) -> Result<bool> {
    let peer = parse_ep(ep)?;
    let get = message::request(MessageType::Confirmable, Code::GET, href, None);
    let r = match connect(state_dir, ep, peer).await? {
        Conn::Oscore(mut client) => Secured::Oscore(
            client
                .request(peer, get)
                .await
                .with_context(|| format!("secured RETRIEVE {href} from {ep}"))?,
        ),
        Conn::Plain(sock) => Secured::Plain(
            request(&sock, peer, get, Duration::from_millis(500), 4)
                .await
                .with_context(|| format!("RETRIEVE {href} from {ep}: is the device running? (`ssm client discover` lists endpoints)"))?,
        ),
    };
    let security = r.security();
    let (code, body) = describe(r.message());
    if json {
        println!(
            "{}",
            serde_json::json!({"code": code.to_string(), "body": body, "security": security})
        );
    } else {
        println!(
            "{code} {} ({security})",
            body.map(|b| b.to_string()).unwrap_or_default()
        );
    }
    Ok(code.is_response() && code.class() == 2)
}

/// The options of `ssm client update` (the multicast form uses them all).
pub(super) struct Multicast<'a> {
    /// `--href`: unicast, the resource (default: the example URI); with
    /// `--multicast`, overrides the hrefs the OBT named.
    pub(super) href: Option<&'a str>,
    pub(super) value: OnOff,
    pub(super) no_no_response: bool,
    pub(super) confirm: bool,
    pub(super) confirm_ms: u64,
    pub(super) group: Option<&'a str>,
    pub(super) net: &'a Net,
}

/// `ssm client update`.
pub(super) async fn update(
    state_dir: &Path,
    ep: Option<String>,
    multicast: bool,
    m: Multicast<'_>,
    json: bool,
) -> Result<bool> {
    let (href, value) = (m.href.unwrap_or(HREF).to_string(), m.value);
    let props = cbor::map([("value", Value::Bool(matches!(value, OnOff::On)))]);
    let creds = load_creds(state_dir)?;
    let oscore = creds.oscore_creds()?;
    if multicast {
        let chosen = ssm_ocf::groups::choose_sender(&creds.creds, m.group).map_err(|e| match e {
            ssm_ocf::groups::SenderChoice::None => anyhow!(
                "no SSM client credential (credtype 128) in {}: run `ssm creds generate`, or grant this switch (`ssm obt ssm grant`)",
                crate::state::creds_path(state_dir).display()
            ),
            e => crate::usage!("{e}"),
        })?;
        // The group's id, if the credential names one (to confirm only
        // the lights of that group).
        let group_id = chosen
            .oscore
            .as_ref()
            .and_then(|o| o.desc.as_deref())
            .and_then(ssm_ocf::groups::group_of_desc)
            .map(|g| g.1);
        // Where its lights serve SSM: the hrefs the OBT named in the
        // credential (one datagram each), unless --href says.
        let desc = chosen.oscore.as_ref().and_then(|o| o.desc.as_deref());
        let hrefs = multicast_hrefs(m.href, desc);
        let credid = chosen.credid;
        return update_multicast(state_dir, &oscore, (credid, group_id), &hrefs, m, json).await;
    }
    let ep = ep.ok_or_else(|| crate::usage!("give a device endpoint, or --multicast"))?;
    let peer = parse_ep(&ep)?;
    let sock = socket_for(peer).await?;
    // Which device is it? Its pair-wise credential is keyed by UUID.
    let d = request(
        &sock,
        peer,
        message::request(MessageType::Confirmable, Code::GET, "/oic/d", None),
        Duration::from_millis(500),
        4,
    )
    .await
    .with_context(|| {
        format!(
            "{ep} did not answer: is the device running? (`ssm client discover` lists endpoints)"
        )
    })?;
    let di: Uuid = message::payload(&d)
        .ok()
        .and_then(|v| cbor::get(&v, "di").and_then(|x| x.as_text().map(String::from)))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{ep} did not tell its device ID"))?;
    let cred = oscore
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(di))
        .ok_or_else(|| anyhow!("no pair-wise OSCORE credential (credtype 64) for device {di}: use --multicast, or provision one"))?;
    let mut client = pairwise_client(state_dir, cred, sock)?;
    let r = client
        .request(
            peer,
            message::update(MessageType::Confirmable, &href, &props),
        )
        .await?;
    let (code, body) = describe(&r);
    if json {
        println!(
            "{}",
            serde_json::json!({"code": code.to_string(), "body": body})
        );
    } else {
        println!("{code} {}", body.map(|b| b.to_string()).unwrap_or_default());
    }
    Ok(code.class() == 2)
}

/// `ssm client update --multicast [--group NAME] [--confirm]`: one SSM
/// datagram, protected with the sender credential `credid` (one per group
/// the switch commands; each its own sequence numbers).
async fn update_multicast(
    state_dir: &Path,
    oscore: &[OscoreCred],
    (credid, group_id): (u32, Option<u32>),
    hrefs: &[String],
    m: Multicast<'_>,
    json: bool,
) -> Result<bool> {
    let Multicast {
        href: _,
        value,
        no_no_response,
        confirm,
        confirm_ms,
        group,
        net,
    } = m;
    let props = cbor::map([("value", Value::Bool(matches!(value, OnOff::On)))]);
    let cred = oscore
        .iter()
        .find(|c| {
            matches!(
                c.credtype,
                CredType::SsmClient | CredType::GroupOscoreSender
            ) && c.credid == credid
        })
        .ok_or_else(|| anyhow!("SSM client credential {credid} is not usable"))?;
    let dir = ssm_runtime::state_dir::StateDir::new(state_dir);
    let store = dir.sequence_store(cred.credid);
    let targets = MulticastTargets::open(&net.scope())?;
    let mut sender = if cred.credtype == CredType::GroupOscoreSender {
        // Group OSCORE group mode: signed with the switch's own key.
        let key = dir.load_signing_key()?.ok_or_else(|| {
            anyhow!(
                "{} has no group signing key ({}): start the switch device once, it makes its key pair",
                state_dir.display(),
                dir.signing_key_path().display()
            )
        })?;
        MulticastSender::Group(Box::new(ssm_runtime::group_client::GroupSsmSender::new(
            cred, &key, store,
        )?))
    } else {
        MulticastSender::Ssm(Box::new(SsmSender::new(cred, store)?))
    };
    let mut sent = Vec::new();
    for h in hrefs {
        for s in sender.send(&targets, h, &props, !no_no_response).await? {
            sent.push((h.as_str(), s));
        }
    }
    if confirm {
        return confirm_lights(
            state_dir,
            oscore,
            &targets,
            hrefs,
            matches!(value, OnOff::On),
            Duration::from_millis(confirm_ms),
            &sent,
            group_id,
            json,
        )
        .await;
    }
    if json {
        let s: Vec<_> = sent
            .iter()
            .map(|(h, s)| serde_json::json!({"href": h, "to": s.to.to_string(), "piv": s.piv, "bytes": s.len}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"sent": s, "group": group, "hrefs": hrefs})
        );
    } else {
        if hrefs.len() > 1 {
            println!(
                "the lights serve SSM at {} hrefs: one datagram per href ({})",
                hrefs.len(),
                hrefs.join(", ")
            );
        }
        for (href, s) in &sent {
            println!(
                "sent SSM UPDATE {href} {:?} to {} (seq {}, {} bytes){}",
                value,
                s.to,
                s.piv,
                s.len,
                group.map(|g| format!(", group {g}")).unwrap_or_default()
            );
        }
    }
    Ok(true)
}

/// `ssm client observe EP`.
pub(super) async fn observe(
    state_dir: &Path,
    ep: &str,
    href: &str,
    count: u32,
    timeout_ms: u64,
    json: bool,
) -> Result<bool> {
    let _ = load_identity(state_dir, "client").ok();
    let peer = parse_ep(ep)?;
    let reg = message::request(MessageType::Confirmable, Code::GET, href, None);
    let show = |m: &ssm_coap::Message, security: &str, seq: Option<u32>| {
        let (code, body) = describe(m);
        if json {
            println!(
                "{}",
                serde_json::json!({"code": code.to_string(), "observe": seq, "body": body, "security": security})
            );
        } else {
            println!(
                "{code} observe={} {} ({security})",
                seq.map(|s| s.to_string()).unwrap_or_default(),
                body.map(|b| b.to_string()).unwrap_or_default()
            );
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    let mut got = 0;
    match connect(state_dir, ep, peer).await? {
        Conn::Oscore(mut client) => {
            let (first, mut obs) = client
                .observe(peer, reg)
                .await
                .with_context(|| format!("secured OBSERVE {href} on {ep}"))?;
            // The order of OSCORE notifications is their Partial
            // IV's (RFC 8613 §4.1.3.5.2): the inner Observe is
            // empty, so the count of notifications is shown.
            show(&first, "oscore", Some(0));
            while got < count {
                match client.next_notification(&mut obs, deadline).await? {
                    Some(n) => {
                        got += 1;
                        show(&n, "oscore", Some(got));
                    }
                    None => break,
                }
            }
        }
        Conn::Plain(sock) => {
            let mut reg = reg;
            reg.add_option_uint(OptionNumber::OBSERVE, 0);
            let first = request(&sock, peer, reg, Duration::from_millis(500), 4).await
            .with_context(|| format!("OBSERVE {href} on {ep}: is the device running? (`ssm client discover` lists endpoints)"))?;
            if first.option_uint(OptionNumber::OBSERVE).is_none() {
                bail!("{ep} did not accept the observation ({}, plain CoAP: no pair-wise credential for it in {})", first.code, state_dir.display());
            }
            show(&first, "plain", first.option_uint(OptionNumber::OBSERVE));
            while got < count {
                match ssm_runtime::client::next_notification_from(
                    &sock,
                    peer,
                    &first.token,
                    deadline,
                )
                .await?
                {
                    Some(n) => {
                        show(&n, "plain", n.option_uint(OptionNumber::OBSERVE));
                        got += 1;
                    }
                    None => break,
                }
            }
        }
    }
    Ok(got == count)
}

/// Where an SSM command goes: `--href` if given, else the hrefs the OBT
/// listed in the SSM Client credential's description (its lights do not
/// all serve the example URI), else the example URI.
fn multicast_hrefs(href: Option<&str>, desc: Option<&str>) -> Vec<String> {
    if let Some(h) = href {
        return vec![h.to_string()];
    }
    let listed = desc
        .map(ssm_ocf::onboarding::hrefs_in_desc)
        .unwrap_or_default();
    if listed.is_empty() {
        vec![HREF.to_string()]
    } else {
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_goes_to_the_hrefs_the_obt_listed() {
        let two = format!(
            "SSM epoch 2{}/lights /BinarySwitchResURI",
            ssm_ocf::onboarding::SSM_HREFS_TAG
        );
        assert_eq!(
            multicast_hrefs(None, Some(&two)),
            vec!["/lights", "/BinarySwitchResURI"]
        );
        assert_eq!(multicast_hrefs(None, Some("SSM epoch 2")), vec![HREF]);
        assert_eq!(multicast_hrefs(None, None), vec![HREF]);
        assert_eq!(multicast_hrefs(Some("/x"), Some(&two)), vec!["/x"]);
    }
}
