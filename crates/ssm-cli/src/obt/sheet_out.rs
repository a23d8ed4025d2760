//! How `onboard --all --pins SHEET` reports: one line per row of the
//! sheet (onboarded, already in the domain, not found, failed: why), the
//! unowned devices it has no row for (left alone), and a hint when nothing
//! was found at all (the wrong interface?).
use ssm_obt::engine::{OnboardReport, RowOutcome, SheetReport};

/// Prints the report; true if every row is done.
pub(super) fn print(sheet: &SheetReport, r: &OnboardReport, iface: &str, json: bool) -> bool {
    let done = sheet.rows.iter().filter(|(_, o)| o.is_done()).count();
    let not_found = sheet
        .rows
        .iter()
        .filter(|(_, o)| *o == RowOutcome::NotFound)
        .count();
    if json {
        let rows: Vec<_> = sheet
            .rows
            .iter()
            .map(|(l, o)| {
                let (result, uuid, name, error) = match o {
                    RowOutcome::Onboarded { uuid, name } => ("onboarded", Some(*uuid), Some(name.clone()), None),
                    RowOutcome::AlreadyInDomain { uuid, name } => ("already_in_domain", Some(*uuid), Some(name.clone()), None),
                    RowOutcome::NotFound => ("not_found", None, l.name.clone(), Some(format!("no unowned device {} on {iface}", l.uuid))),
                    RowOutcome::Failed(e) => ("failed", None, l.name.clone(), Some(e.clone())),
                };
                serde_json::json!({"line": l.line, "sheet_uuid": l.uuid, "result": result, "uuid": uuid,
                    "name": name, "error": error})
            })
            .collect();
        let others: Vec<_> = sheet
            .not_on_sheet
            .iter()
            .map(|(ep, u)| serde_json::json!({"ep": format!("coap://{ep}"), "uuid": u}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"rows": rows, "done": done, "not_done": sheet.rows.len() - done,
                "onboarded": r.devices.iter().filter(|d| d.result.is_ok()).count(),
                "failed": r.devices.iter().filter(|d| d.result.is_err()).count(),
                "not_on_sheet": others, "resumed": r.resumed.len()})
        );
        return sheet.all_done();
    }
    println!("{done} of {} sheet row(s) done", sheet.rows.len());
    for (l, o) in &sheet.rows {
        let who = match &l.name {
            Some(n) => format!("line {} ({n}, {})", l.line, l.uuid),
            None => format!("line {} ({})", l.line, l.uuid),
        };
        match o {
            RowOutcome::Onboarded { uuid, name } => {
                println!("  onboarded  {who} as {name} ({uuid})")
            }
            RowOutcome::AlreadyInDomain { uuid, name } => {
                println!("  already    {who}: in the domain as {name} ({uuid})")
            }
            RowOutcome::NotFound => {
                println!("  NOT FOUND  {who}: no unowned device with this UUID answered on {iface}")
            }
            RowOutcome::Failed(e) => println!("  FAILED     {who}: {e}"),
        }
    }
    if !sheet.not_on_sheet.is_empty() {
        println!(
            "{} unowned device(s) not on the sheet, left alone:",
            sheet.not_on_sheet.len()
        );
        for (ep, u) in &sheet.not_on_sheet {
            println!("  {u} at coap://{ep}");
        }
    }
    if not_found > 0
        && not_found == sheet.rows.len() - done
        && sheet.not_on_sheet.is_empty()
        && done == 0
    {
        println!("nothing answered on {iface}: are the devices on this link? (--iface names the interface)");
    }
    if !r.resumed.is_empty() {
        println!("finished {} interrupted onboarding(s)", r.resumed.len());
    }
    if !sheet.all_done() {
        println!(
            "re-run the same command when the devices are fixed: rows already done are skipped"
        );
    }
    sheet.all_done()
}
