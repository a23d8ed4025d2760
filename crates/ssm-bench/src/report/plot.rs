//! The SVG plot of latency vs N.
use super::*;
use plotters::prelude::*;

/// (label, points, colour, dashed).
type Series = (String, Vec<(f64, f64)>, plotters::style::RGBColor, bool);

pub(super) fn plot(r: &Results, a: &Args, path: &std::path::Path) -> Result<()> {
    draw(series(r, a), path)
}

/// The measured and projected lines.
fn series(r: &Results, a: &Args) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    let mut line = |label: &str,
                    mode: &str,
                    ns: &[usize],
                    pick: &dyn Fn(&Agg) -> Vec<f64>,
                    color: RGBColor,
                    dashed: bool| {
        let pts: Vec<(f64, f64)> = ns
            .iter()
            .filter_map(|&n| {
                let g = agg(r, mode, n)?;
                let v = pick(&g);
                (!v.is_empty()).then(|| (n as f64, med(&v) / 1e3))
            })
            .collect();
        if !pts.is_empty() {
            series.push((label.to_string(), pts, color, dashed));
        }
    };
    let rmode = format!("tasks-reserve{}", a.reserve);
    line(
        "SSM all applied p50 (product, tasks)",
        "tasks",
        &a.n,
        &|g| g.all_p50.clone(),
        RGBColor(200, 30, 30),
        false,
    );
    line(
        "SSM all applied p99 (product, tasks)",
        "tasks",
        &a.n,
        &|g| g.all_p99.clone(),
        RGBColor(240, 130, 40),
        false,
    );
    line(
        "SSM all applied p50 (tasks, one floor journal)",
        "tasks-journal",
        &a.n,
        &|g| g.all_p50.clone(),
        RGBColor(20, 150, 40),
        false,
    );
    line(
        "SSM all applied p99 (tasks, one floor journal)",
        "tasks-journal",
        &a.n,
        &|g| g.all_p99.clone(),
        RGBColor(120, 190, 60),
        false,
    );
    line(
        &format!(
            "SSM all applied p50 (no floor write: reserved {} ahead)",
            a.reserve
        ),
        &rmode,
        &a.n,
        &|g| g.all_p50.clone(),
        RGBColor(150, 0, 150),
        false,
    );
    line(
        "SSM all applied p50 (light processes)",
        "procs",
        &a.procs_n,
        &|g| g.all_p50.clone(),
        RGBColor(0, 140, 140),
        false,
    );
    line(
        "sequential unicast OSCORE p50 (loopback)",
        "tasks",
        &a.n,
        &|g| g.unicast_p50.clone(),
        RGBColor(30, 60, 200),
        false,
    );
    // Projections at RTT 5 ms.
    let proj: Vec<(f64, f64, f64)> =
        a.n.iter()
            .filter_map(|&n| {
                let g = agg(r, "tasks", n)?;
                if g.unicast_p50.is_empty() {
                    return None;
                }
                let per = med(&g.unicast_p50) / 1e3 / n as f64;
                Some((
                    n as f64,
                    2.5 + med(&g.all_p50) / 1e3,
                    n as f64 * (5.0 + per),
                ))
            })
            .collect();
    if !proj.is_empty() {
        series.push((
            "SSM projected, RTT 5 ms".into(),
            proj.iter().map(|p| (p.0, p.1)).collect(),
            RGBColor(200, 30, 30),
            true,
        ));
        series.push((
            "unicast projected, RTT 5 ms".into(),
            proj.iter().map(|p| (p.0, p.2)).collect(),
            RGBColor(30, 60, 200),
            true,
        ));
    }
    series
}

/// Draws `series` on log–log axes into an SVG file at `path`.
fn draw(series: Vec<Series>, path: &std::path::Path) -> Result<()> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    let (mut ymin, mut ymax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if all.is_empty() {
        (ymin, ymax) = (0.01, 1.0);
    }
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One command to N lights: time until the last light applied it",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..xmax * 1.25).log_scale(),
            ((ymin / 2.0).max(0.001)..ymax * 2.0).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("lights N (log)")
        .y_desc("milliseconds (log)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for (label, pts, color, dashed) in series {
        let style = color.stroke_width(2);
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
