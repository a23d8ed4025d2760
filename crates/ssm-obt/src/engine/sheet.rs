//! The commissioning sheet of `onboard --all --pins FILE`: one line per
//! device, `<device uuid> <PIN> [name] [light|switch]` (blank lines and
//! `#` comments allowed). Every row is accounted for: onboarded, already in
//! the domain, not found, or failed (why); a malformed sheet is refused
//! with the number of every bad line before any device is touched.
use super::onboard::{OnboardJob, Onboarding};
use super::{EngineError, Reach};
use crate::store::Store;
use crate::DeviceRole;
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

/// One row of a sheet.
#[derive(Clone)]
pub struct SheetLine {
    /// Its line number (1-based).
    pub line: usize,
    /// The device's UUID as it shows it before onboarding.
    pub uuid: Uuid,
    pin: String,
    /// The name to give it.
    pub name: Option<String>,
    /// Its role, if the row names one.
    pub role: Option<DeviceRole>,
}

impl std::fmt::Debug for SheetLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PIN never reaches a log.
        f.debug_struct("SheetLine")
            .field("line", &self.line)
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Parses a sheet; every malformed line (number, why) if any.
pub fn parse_sheet(text: &str) -> Result<Vec<SheetLine>, Vec<(usize, String)>> {
    let mut rows: Vec<SheetLine> = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        let l = l.split('#').next().unwrap_or_default().trim();
        if l.is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let row = (|| {
            if f.len() < 2 || f.len() > 4 {
                return Err(format!(
                    "{} field(s): want `<device uuid> <PIN> [name] [light|switch]`",
                    f.len()
                ));
            }
            let uuid: Uuid = f[0]
                .parse()
                .map_err(|_| format!("{:?} is not a device UUID", f[0]))?;
            if f[1].len() != 8 || !f[1].bytes().all(|c| c.is_ascii_digit()) {
                return Err("the PIN is not 8 digits".to_string());
            }
            let role_of = |x: &str| {
                x.parse::<DeviceRole>()
                    .map_err(|_| format!("role {x:?}: light or switch"))
            };
            let (name, role) = match &f[2..] {
                [] => (None, None),
                [x] => match x.parse::<DeviceRole>() {
                    Ok(r) => (None, Some(r)),
                    Err(_) => (Some(x.to_string()), None),
                },
                [n, r] => (Some(n.to_string()), Some(role_of(r)?)),
                _ => unreachable!("at most 4 fields"),
            };
            if let Some(prev) = rows.iter().find(|r| r.uuid == uuid) {
                return Err(format!("device {uuid} is also on line {}", prev.line));
            }
            if let Some(prev) = rows.iter().find(|r| name.is_some() && r.name == name) {
                return Err(format!(
                    "the name {} is also on line {}",
                    name.clone().unwrap_or_default(),
                    prev.line
                ));
            }
            Ok(SheetLine {
                line: n,
                uuid,
                pin: f[1].to_string(),
                name,
                role,
            })
        })();
        match row {
            Ok(r) => rows.push(r),
            Err(why) => bad.push((n, why)),
        }
    }
    if bad.is_empty() {
        Ok(rows)
    } else {
        Err(bad)
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Onboarded now, as this device.
    Onboarded {
        /// Its new UUID.
        uuid: Uuid,
        /// Its name in the domain.
        name: String,
    },
    /// Onboarded before (the domain has it).
    AlreadyInDomain {
        /// Its UUID in the domain.
        uuid: Uuid,
        /// Its name in the domain.
        name: String,
    },
    /// No unowned device with its UUID answered on the link.
    NotFound,
    /// Tried and failed (why), or refused before trying.
    Failed(String),
}

impl RowOutcome {
    /// Whether the row needs nothing more.
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            RowOutcome::Onboarded { .. } | RowOutcome::AlreadyInDomain { .. }
        )
    }
}

/// Every row of a sheet and what became of it.
#[derive(Debug, Clone)]
pub struct SheetReport {
    /// Per row, in sheet order.
    pub rows: Vec<(SheetLine, RowOutcome)>,
    /// Unowned devices found that the sheet has no row for (left alone).
    pub not_on_sheet: Vec<(SocketAddr, Uuid)>,
    /// The interface looked on.
    pub iface: String,
}

impl SheetReport {
    /// Whether every row is done.
    pub fn all_done(&self) -> bool {
        self.rows.iter().all(|(_, o)| o.is_done())
    }
}

/// The rows matched to the link: jobs for the devices found, and the
/// outcome of every row decided before onboarding.
#[derive(Debug)]
pub(super) struct RowPlan {
    pub(super) jobs: Vec<OnboardJob>,
    rows: Vec<(SheetLine, Option<SocketAddr>, Option<RowOutcome>)>,
    not_on_sheet: Vec<(SocketAddr, Uuid)>,
    iface: String,
}

/// Looks for the sheet's devices (unowned, on `reach`) and decides what
/// can be decided before onboarding: rows already in the domain, rows
/// whose name another device has, rows not found.
pub(super) async fn plan_rows(
    s: &Store,
    lines: &[SheetLine],
    reach: &Reach,
    role: Option<DeviceRole>,
) -> Result<RowPlan, EngineError> {
    let found = reach.unowned(Duration::from_millis(1000)).await?;
    let mut plan = RowPlan {
        jobs: Vec::new(),
        rows: Vec::new(),
        not_on_sheet: found
            .iter()
            .filter(|(_, id)| !lines.iter().any(|l| l.uuid == *id))
            .copied()
            .collect(),
        iface: reach.iface.clone(),
    };
    for l in lines {
        if let Some(d) = s.by_onboarded_from(&l.uuid)? {
            let o = RowOutcome::AlreadyInDomain {
                uuid: d.uuid,
                name: d.name,
            };
            plan.rows.push((l.clone(), None, Some(o)));
            continue;
        }
        if let Some(n) = &l.name {
            if let Some(other) = s.name_owner(n)? {
                let o = RowOutcome::Failed(format!(
                    "the name {n} is taken by device {other}: change the sheet (or `ssm obt rename`)"
                ));
                plan.rows.push((l.clone(), None, Some(o)));
                continue;
            }
        }
        match found.iter().find(|(_, id)| *id == l.uuid) {
            Some((peer, _)) => {
                plan.jobs.push(OnboardJob {
                    peer: *peer,
                    pin: super::onboard::Pin::Given(l.pin.clone()),
                    name: l.name.clone(),
                    role: l.role.or(role),
                });
                plan.rows.push((l.clone(), Some(*peer), None));
            }
            None => plan
                .rows
                .push((l.clone(), None, Some(RowOutcome::NotFound))),
        }
    }
    Ok(plan)
}

impl RowPlan {
    /// Every row's outcome, given what onboarding did.
    pub(super) fn account(&self, done: &[Onboarding]) -> SheetReport {
        let rows = self
            .rows
            .iter()
            .map(|(l, peer, decided)| {
                let o = decided.clone().unwrap_or_else(|| {
                    let ep = peer.map(|p| format!("coap://{p}")).unwrap_or_default();
                    match done.iter().find(|d| d.ep == ep) {
                        Some(Onboarding {
                            result: Ok(uuid),
                            name,
                            ..
                        }) => RowOutcome::Onboarded {
                            uuid: *uuid,
                            name: name.clone().unwrap_or_default(),
                        },
                        Some(Onboarding { result: Err(e), .. }) => RowOutcome::Failed(e.clone()),
                        None => RowOutcome::Failed("not attempted".into()),
                    }
                });
                (l.clone(), o)
            })
            .collect();
        SheetReport {
            rows,
            not_on_sheet: self.not_on_sheet.clone(),
            iface: self.iface.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row gets an outcome: decided before onboarding, or from what
    /// onboarding did at its device's endpoint.
    #[test]
    fn every_row_is_accounted_for() {
        let u = |n: u128| Uuid::from_u128(n);
        let text = format!(
            "{} 11111111 a\n{} 22222222 b\n{} 33333333 c\n{} 44444444 d\n",
            u(1),
            u(2),
            u(3),
            u(4)
        );
        let lines = parse_sheet(&text).unwrap();
        let peer = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let plan = RowPlan {
            jobs: Vec::new(),
            rows: vec![
                (lines[0].clone(), Some(peer(1)), None),
                (lines[1].clone(), Some(peer(2)), None),
                (lines[2].clone(), None, Some(RowOutcome::NotFound)),
                (
                    lines[3].clone(),
                    None,
                    Some(RowOutcome::AlreadyInDomain {
                        uuid: u(40),
                        name: "d".into(),
                    }),
                ),
            ],
            not_on_sheet: vec![(peer(9), u(9))],
            iface: "lo".into(),
        };
        let done = |p: u16, r: Result<Uuid, String>| Onboarding {
            ep: format!("coap://{}", peer(p)),
            result: r,
            name: Some("a".into()),
            role: Some(DeviceRole::Light),
            was: None,
            warnings: Vec::new(),
        };
        let report = plan.account(&[done(2, Err("refused the PIN".into())), done(1, Ok(u(10)))]);
        let outcomes: Vec<&RowOutcome> = report.rows.iter().map(|r| &r.1).collect();
        assert_eq!(
            outcomes,
            [
                &RowOutcome::Onboarded {
                    uuid: u(10),
                    name: "a".into()
                },
                &RowOutcome::Failed("refused the PIN".into()),
                &RowOutcome::NotFound,
                &RowOutcome::AlreadyInDomain {
                    uuid: u(40),
                    name: "d".into()
                },
            ]
        );
        assert!(!report.all_done());
        assert_eq!(report.not_on_sheet, vec![(peer(9), u(9))]);
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let u1 = "11111111-1111-4111-8111-111111111111";
        let u2 = "22222222-2222-4222-8222-222222222222";
        let good = format!("# sheet\n{u1} 12345678 hall-1 light\n\n{u2} 87654321 switch\n");
        let rows = parse_sheet(&good).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].name.as_deref(), Some("hall-1"));
        assert_eq!(rows[0].role, Some(DeviceRole::Light));
        assert_eq!(rows[1].role, Some(DeviceRole::Switch));
        assert_eq!(rows[1].name, None);
        assert!(
            !format!("{:?}", rows[0]).contains("12345678"),
            "no PIN in Debug"
        );
        let bad = format!(
            "{u1} 12345678 a\ngarbage\n{u2} 1234 b\n{u1} 12345678 c\n{u2} 12345678 a\n{u2} 12345678 x lamp\n"
        );
        let e = parse_sheet(&bad).unwrap_err();
        let lines: Vec<usize> = e.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6], "{e:?}");
        assert!(e[0].1.contains("1 field"));
        assert!(e[1].1.contains("8 digits"));
        assert!(e[2].1.contains("also on line 1"));
        assert!(e[3].1.contains("name a is also on line 1"));
        assert!(e[4].1.contains("lamp"));
    }
}
