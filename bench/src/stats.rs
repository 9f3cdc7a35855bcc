//! Measurements and the result table.

use std::time::Duration;

/// Latency samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples(pub(crate) Vec<Duration>);

impl Samples {
    pub(crate) fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// How a figure compares to its target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Ratio to the baseline must be at least this (throughput).
    AtLeast(f64),
    /// Ratio to the baseline must be at most this (latency).
    AtMost(f64),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) backend: &'static str,
    pub(crate) figure: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Target,
    /// Latency percentiles (p50, p90, p99), for the chart.
    pub(crate) latency: Option<(Duration, Duration, Duration)>,
}

impl Row {
    pub(crate) fn met(&self) -> Option<bool> {
        match (self.ratio, self.target) {
            (Some(r), Target::AtLeast(t)) => Some(r >= t),
            (Some(r), Target::AtMost(t)) => Some(r <= t),
            (None, _) => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast(t) => format!(">= {t}x"),
            Target::AtMost(t) => format!("<= {t}x"),
        }
    }
}

/// Per row, the round with the median ratio (rows are in the same order in every round).
pub(crate) fn median_rows(rounds: Vec<Vec<Row>>) -> Vec<Row> {
    let Some(n) = rounds.first().map(Vec::len) else {
        return Vec::new();
    };
    (0..n)
        .filter_map(|i| {
            let mut candidates: Vec<&Row> = rounds.iter().filter_map(|r| r.get(i)).collect();
            candidates.sort_by(|a, b| a.ratio.unwrap_or(0.0).total_cmp(&b.ratio.unwrap_or(0.0)));
            candidates.get(candidates.len() / 2).map(|r| (*r).clone())
        })
        .collect()
}

pub(crate) fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub(crate) fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

pub(crate) fn fmt_dur(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2}s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.2}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0}us", d.as_secs_f64() * 1e6)
    }
}

/// The table as Markdown.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::from("| scenario | backend | figure | baseline (raw redis) | ratio | target | met |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let ratio = r.ratio.map_or("-".into(), |x| format!("{x:.2}x"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.backend,
            r.figure,
            r.baseline,
            ratio,
            r.target_text(),
            met
        ));
    }
    out
}

/// A bar chart (SVG) of the latency percentiles of the latency rows.
pub(crate) fn svg(rows: &[Row]) -> String {
    let lat: Vec<&Row> = rows.iter().filter(|r| r.latency.is_some()).collect();
    let max = lat
        .iter()
        .filter_map(|r| r.latency.map(|l| l.2))
        .max()
        .unwrap_or(Duration::from_millis(1))
        .as_secs_f64();
    let (w, row_h) = (760.0, 54.0);
    let h = 40.0 + row_h * lat.len() as f64;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n");
    s.push_str("<text x=\"10\" y=\"18\" font-size=\"13\">Latency percentiles (p50 / p90 / p99), log-free linear scale</text>\n");
    for (i, r) in lat.iter().enumerate() {
        let Some((p50, p90, p99)) = r.latency else {
            continue;
        };
        let y = 34.0 + row_h * i as f64;
        s.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{} [{}]</text>\n",
            y + 10.0,
            r.scenario,
            r.backend
        ));
        for (j, (label, d, color)) in [
            ("p50", p50, "#2b8cbe"),
            ("p90", p90, "#7bccc4"),
            ("p99", p99, "#f03b20"),
        ]
        .iter()
        .enumerate()
        {
            let len = 420.0 * d.as_secs_f64() / max;
            let by = y + 14.0 + 11.0 * j as f64;
            s.push_str(&format!(
                "<rect x=\"250\" y=\"{by}\" width=\"{len:.1}\" height=\"9\" fill=\"{color}\"/>\n"
            ));
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\">{label} {}</text>\n",
                255.0 + len,
                by + 8.0,
                fmt_dur(*d)
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ratio: f64) -> Row {
        Row {
            scenario: "S".into(),
            backend: "redis",
            figure: format!("{ratio}"),
            baseline: String::new(),
            ratio: Some(ratio),
            target: Target::AtLeast(1.0),
            latency: None,
        }
    }

    #[test]
    fn each_row_is_the_round_with_its_median_ratio() {
        let rounds = vec![
            vec![row(1.0), row(9.0)],
            vec![row(3.0), row(7.0)],
            vec![row(2.0), row(8.0)],
        ];
        let picked: Vec<_> = median_rows(rounds).into_iter().map(|r| r.figure).collect();
        assert_eq!(picked, ["2", "8"]);
        assert!(median_rows(Vec::new()).is_empty());
    }
}
