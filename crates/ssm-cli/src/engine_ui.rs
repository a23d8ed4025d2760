//! How the `ssm` commands show the OBT engine (`ssm_obt::engine`): its
//! progress as a bar on a terminal (indicatif stays here, out of the
//! library) and its errors with the CLI's exit statuses.
use ssm_obt::engine::{EngineError, Progress};

/// An engine error as the CLI reports it: store errors keep their type
/// (exit status [`EXIT_STORE`](crate::obt::EXIT_STORE)), a request that cannot mean anything is a
/// usage error (2).
pub(crate) fn engine_err(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Store(s) => s.into(),
        e if e.is_usage() => crate::usage!("{e}"),
        e => e.into(),
    }
}

/// A progress callback drawing a bar on a terminal's stderr (when `show`).
pub(crate) fn progress(show: bool) -> impl Fn(Progress) + Sync {
    let bar = std::sync::OnceLock::new();
    move |p| match p {
        Progress::Start { total, what } => {
            let _ = bar.set(progress_bar(total, show, what));
        }
        Progress::Step => {
            if let Some(b) = bar.get() {
                b.inc(1)
            }
        }
        Progress::Finish => {
            if let Some(b) = bar.get() {
                b.finish_and_clear()
            }
        }
    }
}

fn progress_bar(len: usize, show: bool, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(len as u64);
    if show && std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what}"))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}
