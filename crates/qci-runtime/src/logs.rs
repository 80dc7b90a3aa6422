//! Reading container logs written by the monitor (CRI format:
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub time: DateTime<Utc>,
    pub stream: String,
    /// False for a piece of a line too long to keep whole (more follows).
    pub full: bool,
    pub text: String,
}

impl LogLine {
    pub fn parse(line: &str) -> Option<LogLine> {
        let mut it = line.splitn(4, ' ');
        let time = DateTime::parse_from_rfc3339(it.next()?)
            .ok()?
            .with_timezone(&Utc);
        let stream = it.next()?.to_string();
        let full = it.next()? != "P";
        let text = it.next().unwrap_or("").to_string();
        Some(LogLine {
            time,
            stream,
            full,
            text,
        })
    }
}

/// Reads the log from byte `offset`; returns the complete lines and the offset after them.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<LogLine>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    // Only whole records: the monitor may be writing the last one right now.
    let end = buf
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let lines = String::from_utf8_lossy(&buf[..end])
        .lines()
        .filter_map(LogLine::parse)
        .collect();
    Ok((lines, offset + end as u64))
}

/// Joins partial records back into whole lines.
pub fn join_partials(lines: Vec<LogLine>) -> Vec<LogLine> {
    let mut out: Vec<LogLine> = Vec::with_capacity(lines.len());
    let mut open: Option<LogLine> = None;
    for l in lines {
        match open.take() {
            Some(mut o) if o.stream == l.stream => {
                o.text.push_str(&l.text);
                o.full = l.full;
                if o.full { out.push(o) } else { open = Some(o) }
            }
            prev => {
                out.extend(prev);
                if l.full { out.push(l) } else { open = Some(l) }
            }
        }
    }
    out.extend(open);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_join() {
        let a = LogLine::parse("2026-01-01T00:00:00.000000001Z stdout P hel").unwrap();
        let b = LogLine::parse("2026-01-01T00:00:00.000000002Z stdout F lo world").unwrap();
        let c = LogLine::parse("2026-01-01T00:00:00.000000003Z stderr F ").unwrap();
        assert!(!a.full);
        let j = join_partials(vec![a, b, c]);
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].text, "hello world");
        assert_eq!(j[1].text, "");
        assert!(LogLine::parse("garbage").is_none());
    }

    #[test]
    fn read_only_whole_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        std::fs::write(
            &p,
            "2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:01Z stdout F tw",
        )
        .unwrap();
        let (lines, off) = read_from(&p, 0).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(off, 34);
        let (more, _) = read_from(&p, off).unwrap();
        assert!(more.is_empty());
    }
}
