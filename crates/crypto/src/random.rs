//! Bytes from the operating system's CSPRNG.

use rand::TryRngCore;
use rand::rngs::OsRng;

/// The OS random source failed; nothing secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// `N` bytes from the OS CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    OsRng.try_fill_bytes(&mut out).map_err(|_| RandomError)?;
    Ok(out)
}

/// `len` symbols drawn uniformly and independently from `alphabet` (2 to 256 distinct
/// symbols) by the OS CSPRNG. Bytes that would favour the first symbols (the remainder of 256
/// modulo the alphabet's size) are drawn again, so every symbol is equally likely.
pub fn string_from(alphabet: &[u8], len: usize) -> Result<String, RandomError> {
    if alphabet.len() < 2 || alphabet.len() > 256 {
        return Err(RandomError);
    }
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes::<64>()? {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

/// A number in `[0, 1)` with 53 random bits from the OS CSPRNG: for jitter, which need not be
/// secret, drawn here so that every random number of the system has one source.
pub fn fraction() -> Result<f64, RandomError> {
    let raw = u64::from_le_bytes(bytes::<8>()?);
    Ok((raw >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_use_only_the_alphabet_and_every_symbol_of_it() {
        let s = string_from(b"abc", 3000).unwrap();
        assert_eq!(s.len(), 3000);
        for c in ['a', 'b', 'c'] {
            let count = s.chars().filter(|x| *x == c).count();
            // Each symbol is expected 1000 times; 800..1200 is over 13 standard deviations wide.
            assert!((800..1200).contains(&count), "{c}: {count}");
        }
        assert!(string_from(b"a", 4).is_err());
        assert_ne!(
            string_from(b"01", 64).unwrap(),
            string_from(b"01", 64).unwrap()
        );
    }

    #[test]
    fn fractions_stay_in_the_unit_interval_and_spread() {
        let draws: Vec<f64> = (0..1000).map(|_| fraction().unwrap()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(draws.iter().any(|f| *f < 0.1) && draws.iter().any(|f| *f > 0.9));
    }
}
