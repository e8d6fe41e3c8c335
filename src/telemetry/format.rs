//! The text log format: one line per event, `TIMESTAMP LEVEL target: message
//! key=value ...`, the layout of tracing-subscriber's default format without colours.
//!
//! Two differences, the reasons it exists:
//! - Control characters in the message and in field values are escaped (`\n`, `\r`,
//!   `\t`, `\u{1b}`, ...). Field values often come from clients (a tool name, a JSON-RPC
//!   method), and written raw they could forge log lines or send escape sequences to
//!   a terminal; the default format escapes only the message.
//! - It is cheaper: the date and time text is made once per second per thread, and
//!   values are written without the colour wrappers (the access log writes one line
//!   per request, so this is on the hot path).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainText;

/// The field format: `message` first as it is, then `name=value` (values as `Debug`,
/// so strings recorded as such are quoted), control characters escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn separate(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            Some(source) => {
                self.record_debug(field, &format_args!("{value} {}.sources={}", field.name(), Sources(source)))
            }
            None => self.record_debug(field, &format_args!("{value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.separate();
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = if name == "message" {
            write!(Escaping(&mut self.writer), "{value:?}")
        } else {
            self.writer.write_str(name).and_then(|_| self.writer.write_char('=')).and_then(|_| {
                let mut out = Escaping(&mut self.writer);
                write!(out, "{value:?}")
            })
        };
    }
}

/// An error's sources, `[first, second]`.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        let mut current = Some(self.0);
        let mut first = true;
        while let Some(e) = current {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{e}")?;
            current = e.source();
        }
        f.write_char(']')
    }
}

/// Passes text through with control characters escaped.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C0 controls, DEL, and the lead byte of C1 controls (U+0080..U+009F).
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_control() => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `at` as RFC 3339 in UTC with microseconds (`2026-11-24T10:00:43.393851Z`).
fn write_timestamp(w: &mut impl fmt::Write, at: SystemTime) -> fmt::Result {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let whole = UNIX_EPOCH + Duration::from_secs(secs);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            cached.1 = text.trim_end_matches('Z').to_owned();
            cached.0 = secs;
        }
        w.write_str(&cached.1)
    })?;
    write!(w, ".{:06}Z", since.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escaping(&mut out).write_str(s).expect("write");
        out
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("tools/call"), "tools/call");
        assert_eq!(escaped("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escaped("\u{1b}[31mred\u{7f}\u{85}"), "\\u{1b}[31mred\\u{7f}\\u{85}");
        assert_eq!(escaped("été ª"), "été ª");
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        let mut out = String::new();
        write_timestamp(&mut out, at).expect("write");
        assert_eq!(out, "2026-11-18T11:06:40.123456Z");
        // The same second again (from the per-thread cache), then another one.
        let mut again = String::new();
        write_timestamp(&mut again, at + Duration::from_micros(5)).expect("write");
        assert_eq!(again, "2026-11-18T11:06:40.123461Z");
        let mut next = String::new();
        write_timestamp(&mut next, at + Duration::from_secs(86_400)).expect("write");
        assert_eq!(next, "2026-11-19T11:06:40.123456Z");
    }
}
