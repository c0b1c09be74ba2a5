//! Scenario 6's input: a CSV of contacts in the format `rampart import contacts` reads
//! (name,email,phone,us_state,tags with `;`-separated tags), every row valid and every email
//! distinct, so each run imports all of it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::stats::mix;

const TAGS: [&str; 5] = ["lead", "customer", "vip", "newsletter", "churned"];
const STATES: [&str; 8] = ["CA", "NY", "TX", "WA", "FL", "IL", "MA", "CO"];

/// Writes `rows` contacts to `path` and returns the file's size in bytes.
pub fn write_csv(path: &Path, rows: u64) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "name,email,phone,us_state,tags")?;
    for i in 0..rows {
        let idx = usize::try_from(i)?;
        let tag = TAGS[idx % TAGS.len()];
        let second = TAGS[(idx / TAGS.len()) % TAGS.len()];
        let tags = if idx % 3 == 0 && second != tag {
            format!("{tag};{second}")
        } else {
            tag.to_owned()
        };
        // A valid NANP number: the exchange starts with 2-9 and is not an N11 code.
        let m = mix(i ^ 0x5eed);
        let mut exchange = 200 + m % 800;
        if exchange % 100 == 11 {
            exchange += 1;
        }
        writeln!(
            out,
            "Import Contact {i},i{i}@import.example.com,+1415{exchange}{:04},{},{tags}",
            (m / 800) % 10_000,
            STATES[idx % STATES.len()],
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
