//! The external ledger: one append-only text file per process, outside Redis.
//!
//! Each line is `<wall clock µs> <event> <args...>`, written with a single `write` on a file
//! opened in append mode and never buffered in the process, so a SIGKILL loses no line
//! whose write returned. All processes run on one host and share its wall clock, which
//! orders lines across files. The orchestrator tails every file incrementally.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

/// Microseconds since the Unix epoch (the host's wall clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Appends lines to one process's ledger file.
#[derive(Debug)]
pub struct Writer {
    file: Mutex<File>,
}

impl Writer {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Writer {
            file: Mutex::new(file),
        })
    }

    /// Writes `<now> <event>` as one line. A failed write ends the process: a ledger with
    /// holes would make the audit lie.
    pub fn record(&self, event: &str) {
        self.record_at(now_us(), event);
    }

    /// Writes `<at> <event>` as one line.
    pub fn record_at(&self, at: u64, event: &str) {
        let line = format!("{at} {event}\n");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("ledger write failed: {e}");
            std::process::exit(3);
        }
    }
}

/// One parsed ledger line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The file's name without extension: the process it came from.
    pub source: String,
    /// Wall clock µs.
    pub at: u64,
    /// The event and its arguments.
    pub words: Vec<String>,
}

/// Reads the lines appended to every `*.log` file of a directory since the last call.
#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    offsets: HashMap<PathBuf, u64>,
}

impl Tail {
    /// Tails the ledger files in `dir`.
    pub fn new(dir: &Path) -> Tail {
        Tail {
            dir: dir.to_owned(),
            offsets: HashMap::new(),
        }
    }

    /// Every complete line appended since the previous call, in file order per file.
    pub fn poll(&mut self) -> std::io::Result<Vec<Line>> {
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        paths.sort();
        for path in paths {
            let offset = self.offsets.get(&path).copied().unwrap_or(0);
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            // Only complete lines: a line being written is picked up next time.
            let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.offsets.insert(path.clone(), offset + complete as u64);
            let source = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for raw in String::from_utf8_lossy(&buf[..complete]).lines() {
                let mut words = raw.split_whitespace().map(str::to_owned);
                let Some(at) = words.next().and_then(|w| w.parse().ok()) else {
                    continue;
                };
                out.push(Line {
                    source: source.clone(),
                    at,
                    words: words.collect(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_each_complete_line_once() {
        let dir = std::env::temp_dir().join(format!("pulse-chaos-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let w = Writer::open(&dir.join("w1.log")).unwrap();
        let mut tail = Tail::new(&dir);
        w.record_at(5, "S job-1");
        let lines = tail.poll().unwrap();
        assert_eq!(
            lines,
            [Line {
                source: "w1".into(),
                at: 5,
                words: vec!["S".into(), "job-1".into()]
            }]
        );
        std::fs::write(dir.join("other.txt"), "ignored").unwrap();
        assert!(tail.poll().unwrap().is_empty());
        w.record_at(7, "E job-1");
        assert_eq!(tail.poll().unwrap()[0].at, 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
