//! Bearer tokens for `txflow serve`: read from a file (one a line, several
//! for rotation), re-read on demand (SIGHUP), compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq;
use txflow_core::Secret;

/// Tokens shorter than this are refused: a bearer token is only as strong
/// as it is long and random.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the token file {}: {cause}; check the path", .file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the token file {} holds no token: write one token a line (e.g. `openssl rand -hex 32`)",
        .file.display()
    )]
    Empty { file: PathBuf },
    #[error(
        "the token on line {line} of {} is {len} characters long; use at least {MIN_TOKEN_LEN} \
         (e.g. `openssl rand -hex 32`)",
        .file.display()
    )]
    TooShort {
        file: PathBuf,
        line: usize,
        len: usize,
    },
}

/// The tokens a request may present, shared by every request and replaced
/// whole by [`Tokens::reload`].
#[derive(Clone)]
pub struct Tokens {
    file: PathBuf,
    current: Arc<RwLock<Arc<Vec<Secret>>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("file", &self.file)
            .field("count", &self.current().len())
            .finish()
    }
}

impl Tokens {
    /// Reads `file`: one token a line; blank lines and lines starting with
    /// `#` are skipped, spaces around a token trimmed.
    pub fn load(file: &Path) -> Result<Tokens, TokenError> {
        let tokens = read(file)?;
        Ok(Tokens {
            file: file.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(tokens))),
        })
    }

    /// Reads the file again; on an error the tokens in use stay, so a
    /// half-written file never locks everyone out. Returns how many tokens
    /// are now accepted.
    pub fn reload(&self) -> Result<usize, TokenError> {
        let tokens = Arc::new(read(&self.file)?);
        let count = tokens.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = tokens;
        Ok(count)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    fn current(&self) -> Arc<Vec<Secret>> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether `presented` is one of the tokens. Every token is compared,
    /// each in time independent of where the bytes differ (a length that
    /// differs may still show in timing: tokens are long and random).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let tokens = self.current();
        let mut found = subtle::Choice::from(0);
        for token in tokens.iter() {
            found |= token.expose().as_bytes().ct_eq(presented);
        }
        found.into()
    }
}

/// The first token of a token file (same format), for a client to send.
pub fn first_token(file: &Path) -> Result<Secret, TokenError> {
    let mut tokens = read(file)?;
    Ok(tokens.swap_remove(0))
}

fn read(file: &Path) -> Result<Vec<Secret>, TokenError> {
    let text = std::fs::read_to_string(file).map_err(|cause| TokenError::Read {
        file: file.to_owned(),
        cause,
    })?;
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                file: file.to_owned(),
                line: index + 1,
                len: token.len(),
            });
        }
        tokens.push(Secret::new(token));
    }
    if tokens.is_empty() {
        return Err(TokenError::Empty {
            file: file.to_owned(),
        });
    }
    Ok(tokens)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = header.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn every_listed_token_is_accepted_and_nothing_else() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, format!("# rotation\n{A}\n\n  {B}  \n")).expect("write");
        let tokens = Tokens::load(&file).expect("valid");
        assert!(tokens.accepts(A.as_bytes()));
        assert!(tokens.accepts(B.as_bytes()));
        assert!(!tokens.accepts(b"aaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!tokens.accepts(b""));
        assert!(!format!("{tokens:?}").contains(A));

        std::fs::write(&file, format!("{B}\n")).expect("write");
        assert_eq!(tokens.reload().expect("valid"), 1);
        assert!(!tokens.accepts(A.as_bytes()));
        // A broken file keeps the tokens in use.
        std::fs::write(&file, "short\n").expect("write");
        let e = tokens.reload().expect_err("too short").to_string();
        assert!(e.contains("line 1") && e.contains("at least 16"), "{e}");
        assert!(tokens.accepts(B.as_bytes()));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# none yet\n").expect("write");
        let e = Tokens::load(&file).expect_err("empty").to_string();
        assert!(e.contains("holds no token"), "{e}");
    }

    #[test]
    fn the_bearer_scheme_is_read_case_blind() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
