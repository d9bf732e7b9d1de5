//! The digits form: 16 digits (15 random and a Luhn check digit) that the service resolves to a live code, optionally led by the issuer's 6-digit centre code so that any centre's node knows where to resolve them.

use std::fmt;

/// Number of digits, check digit included.
pub const DIGITS_LEN: usize = 16;

/// A digits reference: read out by the member when the scanner fails, typed at the counter.
///
/// 10^15 values against at most a day of live codes make guessing hopeless; the check digit
/// catches every single mistyped digit and most swaps before any lookup.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digits(String);

/// The input is not 16 digits with a valid check digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigitsError {
    /// Not 16 digits, nor 22 led by a centre code (spaces and hyphens between groups are allowed).
    #[error("digits must be 16 decimal digits, or 22 led by the issuer's centre code (spaces between groups allowed)")]
    Format,
    /// The check digit does not match: a digit was misread or mistyped.
    #[error("the check digit does not match: a digit was misread or mistyped")]
    CheckDigit,
}

fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            let value = u32::from(*digit - b'0');
            if index % 2 == 0 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

impl Digits {
    /// Fresh random digits.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut digits = Vec::with_capacity(DIGITS_LEN);
        let mut pool = [0u8; 32];
        while digits.len() < DIGITS_LEN - 1 {
            crate::random::fill(&mut pool)?;
            // Bytes of 250 and above are dropped so that every digit is equally likely.
            digits.extend(pool.iter().filter(|byte| **byte < 250).map(|byte| b'0' + byte % 10));
            digits.truncate(DIGITS_LEN - 1);
        }
        digits.push(luhn_check_digit(&digits));
        Ok(Self(String::from_utf8(digits).expect("ASCII digits")))
    }

    /// Parses typed digits, ignoring spaces and hyphens.
    pub fn parse(input: &str) -> Result<Self, DigitsError> {
        let digits: Vec<u8> = input.bytes().filter(|byte| !matches!(byte, b' ' | b'-')).collect();
        if digits.len() != DIGITS_LEN || !digits.iter().all(u8::is_ascii_digit) {
            return Err(DigitsError::Format);
        }
        if luhn_check_digit(&digits[..DIGITS_LEN - 1]) != digits[DIGITS_LEN - 1] {
            return Err(DigitsError::CheckDigit);
        }
        Ok(Self(String::from_utf8(digits).expect("ASCII digits")))
    }

    /// The 16 digits without separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Digits as typed at a counter: the 16, and the issuer's centre if the network form was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedDigits {
    /// The issuer's centre, from the network form's first 6 digits.
    pub centre: Option<crate::code::CentreCode>,
    /// The digits proper.
    pub digits: Digits,
}

impl TypedDigits {
    /// Parses 16 digits, or 22 whose first 6 are a centre code (the network form).
    pub fn parse(input: &str) -> Result<Self, DigitsError> {
        let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if compact.len() == NETWORK_LEN && compact.is_ascii() {
            let (centre, digits) = compact.split_at(NETWORK_LEN - DIGITS_LEN);
            let centre = centre.parse().map_err(|_| DigitsError::Format)?;
            return Ok(Self { centre: Some(centre), digits: Digits::parse(digits)? });
        }
        Ok(Self { centre: None, digits: Digits::parse(&compact)? })
    }
}

/// Length of the network form: a 6-digit centre code and the 16 digits.
pub const NETWORK_LEN: usize = 6 + DIGITS_LEN;

/// The network form as a member reads it out: `410800 1234 5678 9012 3452`.
pub fn network_form(centre: crate::code::CentreCode, digits: &Digits) -> String {
    format!("{centre} {digits}")
}

impl fmt::Display for Digits {
    /// Groups of four, as a member reads them out: `1234 5678 9012 3452`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<&str> = (0..DIGITS_LEN).step_by(4).map(|start| &self.0[start..start + 4]).collect();
        f.write_str(&groups.join(" "))
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digits({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_digits_parse_back_and_any_single_change_is_caught() {
        for _ in 0..200 {
            let digits = Digits::random().unwrap();
            assert_eq!(Digits::parse(&digits.to_string()).unwrap(), digits);
            for position in 0..DIGITS_LEN {
                let mut changed = digits.as_str().as_bytes().to_vec();
                changed[position] = b'0' + (changed[position] - b'0' + 1) % 10;
                let changed = String::from_utf8(changed).unwrap();
                assert_eq!(Digits::parse(&changed), Err(DigitsError::CheckDigit), "{changed}");
            }
        }
    }

    #[test]
    fn the_network_form_names_the_centre() {
        let digits = Digits::random().unwrap();
        let centre = crate::code::CentreCode::new(410800).unwrap();
        let typed = TypedDigits::parse(&network_form(centre, &digits)).unwrap();
        assert_eq!(typed, TypedDigits { centre: Some(centre), digits: digits.clone() });
        assert_eq!(TypedDigits::parse(digits.as_str()).unwrap().centre, None);
        // A centre code cannot start with 0; the check digit still guards the rest.
        assert_eq!(TypedDigits::parse(&format!("012345{digits}")), Err(DigitsError::Format));
    }

    #[test]
    fn format_errors() {
        assert_eq!(Digits::parse("1234"), Err(DigitsError::Format));
        assert_eq!(Digits::parse("abcd efgh ijkl mnop"), Err(DigitsError::Format));
        // 4539 1488 0343 6467 is a well-known Luhn-valid number.
        assert!(Digits::parse("4539-1488-0343-6467").is_ok());
    }
}
