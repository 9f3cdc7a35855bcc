//! Small SVG charts drawn on the server, and the sampler behind the events/s chart.
//!
//! The sampler starts with the first dashboard request and, every [`EVERY`], reads the
//! length and last ID of the first [`STREAMS`] streams; it keeps [`POINTS`] samples per
//! stream and stops when the gateway is gone. A rate is the growth of the stream's length
//! between two samples (trimming makes it an underestimate; a stream that shrinks counts
//! zero).

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use pulse::{keys::Keyspace, Backend};

/// Time between samples.
const EVERY: Duration = Duration::from_secs(2);
/// Samples kept per stream (two minutes).
const POINTS: usize = 60;
/// Streams sampled.
const STREAMS: usize = 50;

type Series = BTreeMap<String, VecDeque<(Instant, u64)>>;

/// Events/s per stream, sampled in the background.
#[derive(Debug, Default)]
pub(in crate::gateway) struct Sampler {
    series: Mutex<Series>,
    started: std::sync::OnceLock<()>,
}

impl Sampler {
    /// Starts sampling (once).
    pub(in crate::gateway) fn start(
        self: &Arc<Self>,
        backend: Arc<dyn Backend>,
        keyspace: Keyspace,
    ) {
        let weak = Arc::downgrade(self);
        self.started.get_or_init(|| {
            tokio::spawn(sample(weak, backend, keyspace));
        });
    }

    /// Each sampled stream's rates (events/s between consecutive samples), oldest first.
    pub(super) fn rates(&self) -> BTreeMap<String, Vec<f64>> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .iter()
            .map(|(name, points)| {
                let rates = points
                    .iter()
                    .zip(points.iter().skip(1))
                    .map(|((t0, n0), (t1, n1))| {
                        let dt = t1.duration_since(*t0).as_secs_f64().max(1e-3);
                        n1.saturating_sub(*n0) as f64 / dt
                    })
                    .collect();
                (name.clone(), rates)
            })
            .collect()
    }
}

async fn sample(sampler: Weak<Sampler>, backend: Arc<dyn Backend>, keyspace: Keyspace) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let Some(sampler) = sampler.upgrade() else {
            return;
        };
        let Ok(rows) = crate::listing::streams(backend.as_ref(), &keyspace, STREAMS).await else {
            continue;
        };
        let now = Instant::now();
        let mut series = sampler.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|name, _| rows.iter().any(|r| &r.name == name));
        for row in rows {
            let Some(length) = row.length else { continue };
            let points = series.entry(row.name).or_default();
            points.push_back((now, length));
            while points.len() > POINTS {
                points.pop_front();
            }
        }
    }
}

/// A sparkline of `values` (`w` x `h` pixels), labelled for screen readers.
pub(super) fn sparkline(values: &[f64], label: &str, w: u32, h: u32) -> String {
    // One rate is a flat line across, not a dot nobody sees.
    let one;
    let values = match values {
        [v] => {
            one = [*v, *v];
            &one[..]
        }
        _ => values,
    };
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let step = if values.len() > 1 {
        f64::from(w) / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = i as f64 * step;
        let y = f64::from(h) - (v / max) * f64::from(h - 2) - 1.0;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>"#,
        escape(label),
        points.trim_end()
    )
}

/// Horizontal bars: one per `(label, value)`.
pub(super) fn bars(items: &[(String, u64)], label: &str) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let (row, width) = (22u32, 400u32);
    let height = row * items.len().max(1) as u32;
    let mut out = format!(
        r#"<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(label)
    );
    for (i, (name, value)) in items.iter().enumerate() {
        let y = i as u32 * row;
        let len = (*value as f64 / max as f64 * 200.0).round();
        let _ = write!(
            out,
            r#"<text x="0" y="{}" font-size="12">{}</text><rect x="150" y="{}" width="{len}" height="{}" fill="currentColor" opacity="0.7"/><text x="{}" y="{}" font-size="12">{value}</text>"#,
            y + 15,
            escape(&shorten(name, 16)),
            y + 4,
            row - 8,
            155.0 + len,
            y + 15,
        );
    }
    out.push_str("</svg>");
    out
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// Escapes text for SVG (XML) content and attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_names_and_scale() {
        let svg = bars(&[("<b>".into(), 2), ("x".into(), 4)], "pending \"now\"");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("aria-label=\"pending &quot;now&quot;\""),
            "{svg}"
        );
        assert!(
            svg.contains("width=\"200\""),
            "the largest bar is full: {svg}"
        );
        let line = sparkline(&[0.0, 5.0, 10.0], "rate", 100, 20);
        assert!(
            line.contains("points=\"0.0,19.0 50.0,10.0 100.0,1.0\""),
            "{line}"
        );
    }
}
