//! Rows for a statement to read from one JSON array (`json_each`), so that one
//! statement, one hand-off to the connection's thread, carries any number of them.
//! Blobs travel as hex, for `unhex`.

use std::io::Write as _;

use crate::ledger::{LedgerError, internal};

/// A JSON array of arrays, written straight into one buffer.
pub(super) struct JsonRows {
    bytes: Vec<u8>,
    rows: usize,
}

/// One row of [`JsonRows`], its values in order.
pub(super) struct JsonRow<'a> {
    bytes: &'a mut Vec<u8>,
    values: usize,
}

impl JsonRows {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(bytes + 2);
        buffer.push(b'[');
        Self {
            bytes: buffer,
            rows: 0,
        }
    }

    pub(super) fn row(
        &mut self,
        write: impl FnOnce(&mut JsonRow<'_>) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if self.rows > 0 {
            self.bytes.push(b',');
        }
        self.rows += 1;
        self.bytes.push(b'[');
        write(&mut JsonRow {
            bytes: &mut self.bytes,
            values: 0,
        })?;
        self.bytes.push(b']');
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<String, LedgerError> {
        self.bytes.push(b']');
        String::from_utf8(self.bytes).map_err(internal)
    }
}

impl JsonRow<'_> {
    fn next(&mut self) {
        if self.values > 0 {
            self.bytes.push(b',');
        }
        self.values += 1;
    }

    /// A JSON string, escaped as JSON requires: keys may hold any character.
    pub(super) fn text(&mut self, value: &str) -> Result<(), LedgerError> {
        self.next();
        serde_json::to_writer(&mut *self.bytes, value).map_err(internal)
    }

    pub(super) fn null(&mut self) {
        self.next();
        self.bytes.extend_from_slice(b"null");
    }

    pub(super) fn integer(&mut self, value: i64) {
        self.next();
        let _ = write!(self.bytes, "{value}");
    }

    pub(super) fn hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.next();
        self.bytes.reserve(bytes.len() * 2 + 2);
        self.bytes.push(b'"');
        for byte in bytes {
            self.bytes.push(DIGITS[usize::from(byte >> 4)]);
            self.bytes.push(DIGITS[usize::from(byte & 0x0f)]);
        }
        self.bytes.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_a_json_array_of_arrays() {
        let mut rows = JsonRows::with_capacity(0);
        for (key, token) in [("a\"b", 1), ("ключ\n", -2)] {
            rows.row(|row| {
                row.text(key)?;
                row.integer(token);
                row.hex(&[0, 255]);
                Ok(())
            })
            .unwrap();
        }
        let text = rows.finish().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([["a\"b", 1, "00ff"], ["ключ\n", -2, "00ff"]])
        );
        assert_eq!(JsonRows::with_capacity(0).finish().unwrap(), "[]");
    }
}
