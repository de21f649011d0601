//! A self-contained HTML report (inline CSS and SVG, nothing fetched): a summary table, then per
//! scenario a timeline with one lane per board (steps as bars, console milestones as ticks) and
//! the steps with their expectations, linking to the console transcripts.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::escape;
use crate::engine::{ScenarioResult, StepResult, Verdict};

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;color:#1d232a;background:#fafbfc;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0}
.meta{color:#5b6570;margin-bottom:16px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e7eb;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.n{white-space:nowrap;color:#4a545e}
.ms{font-size:12px;color:#4a545e;margin:2px 0 8px}.ms b{color:#1558b0;font-weight:600}
.v{display:inline-block;min-width:52px;text-align:center;border-radius:4px;padding:1px 6px;font-weight:600;font-size:12px;color:#fff}
.pass{background:#2e8540}.fail{background:#c62828}.error{background:#8e24aa}.skip{background:#b07d00}.notrun{background:#8a949e}
section{background:#fff;border:1px solid #dde2e7;border-radius:8px;padding:14px 16px;margin:18px 0}
section header{display:flex;gap:12px;align-items:center;margin-bottom:6px}
.about{color:#3b4550;margin:4px 0 10px}
.reason{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#fff4f4;border-left:3px solid #c62828;padding:6px 8px;margin:8px 0}
.skipreason{background:#fffbea;border-left-color:#b07d00}
.detail{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#4a545e;white-space:pre-wrap}
ul.ex{margin:2px 0 0 0;padding-left:18px}
svg text{font:11px system-ui,sans-serif;fill:#3b4550}
a{color:#1558b0}
"#;

fn class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail(_) => "fail",
        Verdict::Error(_) => "error",
        Verdict::Skip(_) => "skip",
        Verdict::NotRun(_) => "notrun",
    }
}

fn colour(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#2e8540",
        Verdict::Fail(_) => "#c62828",
        Verdict::Error(_) => "#8e24aa",
        Verdict::Skip(_) => "#b07d00",
        Verdict::NotRun(_) => "#8a949e",
    }
}

fn badge(v: &Verdict) -> String {
    format!("<span class=\"v {}\">{}</span>", class(v), v.word())
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn anchor(name: &str) -> String {
    name.replace(['/', ' '], "-")
}

/// A link to `path` relative to the report's directory when it lies below it.
fn link(report_dir: &Path, path: &Path) -> String {
    path.strip_prefix(report_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("file://{}", path.display()))
}

/// The timeline: x is time since the scenario's start, one lane per board.
fn timeline(r: &ScenarioResult) -> String {
    let mut lanes: Vec<String> = r.boards.iter().map(|b| b.name.clone()).collect();
    for s in &r.steps {
        if let Some(b) = &s.board
            && !lanes.contains(b)
        {
            lanes.push(b.clone());
        }
    }
    if r.steps.iter().any(|s| s.board.is_none()) {
        lanes.push("(harness)".into());
    }
    if lanes.is_empty() || r.steps.iter().all(|s| s.started.is_none()) {
        return String::new();
    }
    let total = r
        .steps
        .iter()
        .filter_map(|s| Some(s.started? + s.duration.unwrap_or_default()))
        .chain(
            r.boards
                .iter()
                .flat_map(|b| b.milestones.iter().map(|m| m.at)),
        )
        .max()
        .unwrap_or_default()
        .max(r.duration)
        .as_secs_f64()
        .max(1.0);
    let (left, width, lane_h, top) = (110.0, 1040.0, 46.0, 22.0);
    let height = top + lane_h * lanes.len() as f64 + 8.0;
    let x = |t: f64| left + t / total * width;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {height}\" role=\"img\" aria-label=\"timeline of {}\">",
        left + width + 10.0,
        escape(&r.name)
    );
    // Time axis.
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0]
        .into_iter()
        .find(|s| total / s <= 12.0)
        .unwrap_or(600.0);
    let mut t = 0.0;
    while t <= total {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{height}\" stroke=\"#e3e7eb\"/><text x=\"{0:.1}\" y=\"14\" text-anchor=\"middle\">{2}s</text>",
            x(t),
            top - 4.0,
            t
        );
        t += step;
    }
    for (i, lane) in lanes.iter().enumerate() {
        let y = top + lane_h * i as f64;
        let _ = write!(
            svg,
            "<rect x=\"0\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{}\"/><text x=\"6\" y=\"{}\" font-weight=\"600\">{}</text>",
            left + width + 10.0,
            lane_h,
            if i % 2 == 0 { "#f7f9fb" } else { "#ffffff" },
            y + lane_h / 2.0 + 4.0,
            escape(lane)
        );
        // Steps as bars.
        for s in r.steps.iter().filter(|s| {
            s.board.as_deref().unwrap_or("(harness)") == lane.as_str() && s.started.is_some()
        }) {
            let start = s.started.unwrap_or_default().as_secs_f64();
            let end = start + s.duration.unwrap_or_default().as_secs_f64();
            let w = (x(end) - x(start)).max(3.0);
            let _ = write!(
                svg,
                "<g><title>step {}: {} — {}{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"16\" rx=\"3\" fill=\"{}\" opacity=\"0.85\"/>",
                s.number,
                escape(&s.text),
                s.verdict.word(),
                s.verdict
                    .reason()
                    .map(|r| format!(": {}", escape(r)))
                    .unwrap_or_default(),
                x(start),
                y + 6.0,
                colour(&s.verdict)
            );
            if w > 16.0 {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#fff;font-weight:600\">{}</text>",
                    x(start) + 3.0,
                    y + 18.0,
                    s.number
                );
            }
            svg.push_str("</g>");
        }
        // Console milestones as ticks.
        if let Some(b) = r.boards.iter().find(|b| &b.name == lane) {
            for m in &b.milestones {
                let harness = m.text.starts_with("[harness]");
                let _ = write!(
                    svg,
                    "<g><title>{:.2} s: {}</title><line x1=\"{2:.1}\" x2=\"{2:.1}\" y1=\"{3:.1}\" y2=\"{4:.1}\" stroke=\"{5}\" stroke-width=\"2\"/><circle cx=\"{2:.1}\" cy=\"{4:.1}\" r=\"3\" fill=\"{5}\"/></g>",
                    m.at.as_secs_f64(),
                    escape(&m.text),
                    x(m.at.as_secs_f64()),
                    y + 25.0,
                    y + 38.0,
                    if harness { "#8a949e" } else { "#1558b0" }
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn step_row(s: &StepResult) -> String {
    let mut ex = String::new();
    if !s.expectations.is_empty() {
        ex.push_str("<ul class=\"ex\">");
        for e in &s.expectations {
            let _ = write!(
                ex,
                "<li>{} {}{}</li>",
                badge(&e.verdict),
                escape(&e.text),
                e.verdict
                    .reason()
                    .map(|r| format!(" — <span class=\"detail\">{}</span>", escape(r)))
                    .unwrap_or_default()
            );
        }
        ex.push_str("</ul>");
    }
    let reason = match (&s.verdict, s.expectations.is_empty()) {
        (Verdict::Pass, _) => String::new(),
        (v, true) | (v @ (Verdict::NotRun(_) | Verdict::Error(_)), false) => format!(
            "<div class=\"detail\">{}</div>",
            escape(v.reason().unwrap_or_default())
        ),
        _ => String::new(),
    };
    format!(
        "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}{reason}{ex}{}</td></tr>",
        s.number,
        s.started.map(secs).unwrap_or_default(),
        s.duration.map(secs).unwrap_or_default(),
        badge(&s.verdict),
        escape(&s.text),
        s.detail
            .as_ref()
            .map(|d| format!("<div class=\"detail\">{}</div>", escape(d)))
            .unwrap_or_default()
    )
}

/// The report of a run on `target` taking `wall` in total; links are relative to `report_dir`.
pub fn html(target: &str, results: &[ScenarioResult], wall: Duration, report_dir: &Path) -> String {
    let n = |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count();
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>keybound scenarios on {}</title><style>{CSS}</style></head><body>",
        escape(target)
    );
    let _ = write!(
        out,
        "<h1>keybound scenarios on {}</h1><div class=\"meta\">{} scenarios: {} passed, {} failed, {} skipped · wall time {}</div>",
        escape(target),
        results.len(),
        n(|v| *v == Verdict::Pass),
        n(Verdict::is_failure),
        n(|v| matches!(v, Verdict::Skip(_) | Verdict::NotRun(_))),
        secs(wall)
    );
    out.push_str("<table><tr><th>scenario</th><th>title</th><th>result</th><th>time</th></tr>");
    for r in results {
        let _ = write!(
            out,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            anchor(&r.name),
            escape(&r.name),
            escape(&r.title),
            badge(&r.verdict),
            secs(r.duration)
        );
    }
    out.push_str("</table>");
    for r in results {
        let _ = write!(
            out,
            "<section id=\"{}\"><header>{}<h2>{}</h2><span class=\"meta\">{} · {}</span></header>",
            anchor(&r.name),
            badge(&r.verdict),
            escape(&r.title),
            escape(&r.name),
            secs(r.duration)
        );
        match &r.verdict {
            Verdict::Fail(_) | Verdict::Error(_) => {
                let _ = write!(
                    out,
                    "<div class=\"reason\">{}</div>",
                    escape(&r.failure_message().unwrap_or_default())
                );
            }
            Verdict::Skip(reason) | Verdict::NotRun(reason) => {
                let _ = write!(
                    out,
                    "<div class=\"reason skipreason\">skipped: {}</div>",
                    escape(reason)
                );
            }
            Verdict::Pass => {}
        }
        out.push_str(&timeline(r));
        let mut guest: Vec<_> = r
            .boards
            .iter()
            .flat_map(|b| {
                b.milestones
                    .iter()
                    .filter(|m| !m.text.starts_with("[harness]"))
                    .map(move |m| (m.at, &b.name, &m.text))
            })
            .collect();
        guest.sort_by_key(|(at, _, _)| *at);
        let guest: Vec<String> = guest
            .into_iter()
            .map(|(at, board, text)| {
                format!(
                    "<b>{:.1} s</b> {}: {}",
                    at.as_secs_f64(),
                    escape(board),
                    escape(text)
                )
            })
            .collect();
        if !guest.is_empty() {
            let _ = write!(
                out,
                "<div class=\"ms\">console milestones: {}</div>",
                guest.join(" · ")
            );
        }
        let links: Vec<String> = r
            .boards
            .iter()
            .filter_map(|b| {
                let t = b.transcript.as_ref()?;
                Some(format!(
                    "<a href=\"{}\">{} console transcript</a>",
                    escape(&link(report_dir, t)),
                    escape(&b.name)
                ))
            })
            .collect();
        if !links.is_empty() {
            let _ = write!(out, "<div class=\"meta\">{}</div>", links.join(" · "));
        }
        out.push_str(
            "<table><tr><th>#</th><th>at</th><th>took</th><th>result</th><th>step</th></tr>",
        );
        for s in &r.steps {
            out.push_str(&step_row(s));
        }
        out.push_str("</table></section>");
    }
    out.push_str("<div class=\"meta\">Timeline: bars are steps (colour = result; hover for details); blue ticks are console milestones, grey ticks harness notes.</div></body></html>\n");
    out
}
