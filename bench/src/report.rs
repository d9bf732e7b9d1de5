//! The result table: one row per measurement, against its anchor and its target.

use std::time::Duration;

use crate::load::Measured;

/// One line of the result table.
pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) load: String,
    pub(crate) measured: Option<Measured>,
    /// (throughput ratio, p99 ratio) against the row's anchor.
    pub(crate) against: Option<(f64, f64)>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

impl Row {
    pub(crate) fn new(what: &str, load: String, measured: Measured) -> Self {
        Self { what: what.into(), load, measured: Some(measured), against: None, target: String::new(), met: None }
    }

    pub(crate) fn against(mut self, anchor: &Measured) -> Self {
        let measured = self.measured.expect("a measured row");
        self.against =
            Some((measured.per_second / anchor.per_second, measured.p99().as_secs_f64() / anchor.p99().as_secs_f64()));
        self
    }

    pub(crate) fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    /// What the row is for, when it has no pass mark (a ratio reported for the docs).
    pub(crate) fn note(mut self, note: &str) -> Self {
        self.target = note.into();
        self
    }

    pub(crate) fn fact(what: &str, value: String, target: &str, met: Option<bool>) -> Self {
        Self { what: what.into(), load: value, measured: None, against: None, target: target.into(), met }
    }

    pub(crate) fn print(&self) {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        let (rate, p50, p99, p999) = match &self.measured {
            Some(m) => (format!("{:.0}", m.per_second), ms(m.latency[0]), ms(m.latency[1]), ms(m.latency[2])),
            None => Default::default(),
        };
        let cpu = match self.measured.and_then(|m| m.cpu) {
            Some([server, redis]) => format!("{} / {}", server.as_micros(), redis.as_micros()),
            None => String::new(),
        };
        let (vs_throughput, vs_p99) = match self.against {
            Some((throughput, p99)) => (format!("{throughput:.2}"), format!("{p99:.2}")),
            None => Default::default(),
        };
        let met = match self.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        println!(
            "| {} | {} | {rate} | {p50} | {p99} | {p999} | {cpu} | {vs_throughput} | {vs_p99} | {} | {met} |",
            self.what, self.load, self.target
        );
    }
}
