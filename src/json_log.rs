//! JSON log lines in the shape of tracing-subscriber's `json()` (`timestamp`, `level`, `fields`, `target`), written straight into the line instead of through serde.

use std::fmt::{self, Write};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of `log_format = "json"`. Every call writes a line (`verified`, `issued`),
/// and tracing-subscriber's own JSON format cost about 15,000 instructions per line (serde's
/// writes each checked as UTF-8 again, a calendar computed per line): about 4% of an issuance.
/// Spans are not shown (the log layer filters them out), as with the format it replaces.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut line: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        line.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut line, SystemTime::now())?;
        line.write_str("\",\"level\":\"")?;
        line.write_str(metadata.level().as_str())?;
        line.write_str("\",\"fields\":{")?;
        let mut fields = JsonFields { line: &mut line, first: true, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        line.write_str("},\"target\":")?;
        write_string(&mut line, metadata.target())?;
        line.write_str("}\n")
    }
}

/// `2026-11-27T09:50:27.481147Z`: UTC with microseconds, as tracing-subscriber writes it (in
/// both formats).
pub(crate) fn write_timestamp(out: &mut impl Write, now: SystemTime) -> fmt::Result {
    let now = time::OffsetDateTime::from(now);
    let (hour, minute, second, micros) = now.to_hms_micro();
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, digits: usize, mut value: u32| {
        for index in (at..at + digits).rev() {
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, now.year().clamp(0, 9999) as u32);
    put(5, 2, u8::from(now.month()).into());
    put(8, 2, now.day().into());
    put(11, 2, hour.into());
    put(14, 2, minute.into());
    put(17, 2, second.into());
    put(20, 6, micros);
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// Writes each field as `"name":value`: numbers and booleans as JSON numbers and booleans,
/// everything else as a JSON string (`Display` for `%value`, `Debug` for `?value` and messages).
struct JsonFields<'line, W> {
    line: &'line mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> JsonFields<'_, W> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) { "" } else { "," };
        self.result = self
            .line
            .write_str(separator)
            .and_then(|()| write_string(self.line, field.name()))
            .and_then(|()| self.line.write_char(':'))
            .and_then(|()| value(self.line));
    }
}

impl<W: Write> Visit for JsonFields<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |line| {
            line.write_char('"')?;
            write!(Escaped(line), "{value:?}")?;
            line.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |line| write_string(line, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |line| write!(line, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |line| write!(line, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |line| line.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes null for them too.
        self.entry(field, |line| if value.is_finite() { write!(line, "{value}") } else { line.write_str("null") });
    }
}

fn write_string(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string: quote, backslash and the control
/// characters; everything else is written as it is (the line is UTF-8).
struct Escaped<'out, W>(&'out mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain_from = 0;
        for (index, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain_from..index])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain_from = index + 1;
        }
        self.0.write_str(&text[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(format: impl FnOnce(Captured) -> Box<dyn Subscriber + Send + Sync>) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = format(captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let code_id = "5f23099fdb15852e5d531487";
            tracing::info!(verdict = "VALID", code_id = %code_id, request_id = Some("r-1"), "verified");
            tracing::warn!(
                error = %"quote \" backslash \\ newline \n tab \t bell \u{7} 張偉",
                count = 3u64,
                delta = -2i64,
                ratio = 0.5,
                broken = f64::NAN,
                ok = true,
                missing = ?None::<u8>,
                "a \"hostile\" message\r\n"
            );
            tracing::error!(target: "liangma::store", "no fields");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }

    /// The lines say what tracing-subscriber's `json()` said for the same events, character
    /// for character once parsed, but for the time.
    #[test]
    fn lines_match_tracing_subscribers_json_format() {
        let ours = lines_of(|out| {
            Box::new(tracing_subscriber::fmt().event_format(JsonLines).with_writer(move || out.clone()).finish())
        });
        let theirs =
            lines_of(|out| Box::new(tracing_subscriber::fmt().json().with_writer(move || out.clone()).finish()));
        assert_eq!(ours.len(), 3);
        let without_time = |lines: &[serde_json::Value]| -> Vec<serde_json::Value> {
            lines
                .iter()
                .map(|line| {
                    let mut line = line.clone();
                    line.as_object_mut().unwrap().remove("timestamp").expect("a timestamp");
                    line
                })
                .collect()
        };
        assert_eq!(without_time(&ours), without_time(&theirs));
        assert_eq!(ours[1]["fields"]["broken"], serde_json::Value::Null);
        for line in &ours {
            let stamp = line["timestamp"].as_str().unwrap();
            assert_eq!(stamp.len(), 27, "{stamp}");
            let at = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
            assert!((time::OffsetDateTime::now_utc() - at).whole_seconds().abs() < 60, "{stamp}");
        }
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_774_227_481_147);
        let mut text = String::new();
        write_timestamp(&mut text, at).unwrap();
        assert_eq!(text, "2026-11-27T10:10:27.481147Z");
        text.clear();
        write_timestamp(&mut text, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(text, "1970-01-01T00:00:00.000000Z");
    }
}
