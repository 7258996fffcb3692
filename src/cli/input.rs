//! Reading a command's input: a file, or stdin for `-`.
//!
//! Inputs are read before connecting, so an unreadable file is reported as the
//! caller's mistake (invalid argument) and never mistaken for an unreachable sidecar.
//! The reads block: a client invocation does nothing else meanwhile.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tonic::Code;

use super::exit::{Exit, Failure};

/// The whole of `path` (stdin for `-`).
pub fn read_all(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .map_err(|error| unreadable(path, error))?;
    Ok(bytes)
}

/// The SHA-256 of `path` (stdin for `-`), hashed as it streams so a large payload
/// need not fit in memory.
pub fn sha256_of(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut open(path)?, &mut hasher).map_err(|error| unreadable(path, error))?;
    Ok(hasher.finalize().to_vec())
}

fn open(path: &Path) -> Result<Box<dyn Read>, Failure> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = File::open(path).map_err(|error| unreadable(path, error))?;
    Ok(Box::new(file))
}

fn unreadable(path: &Path, error: std::io::Error) -> Failure {
    let name = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    Failure::local(
        Exit::InvalidArgument,
        Code::InvalidArgument,
        format!("cannot read {name}: {error}"),
    )
}
