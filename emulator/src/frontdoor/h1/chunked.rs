//! Finding where a chunked body ends while its bytes are copied through unchanged.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { val: u64, digits: u8 },
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    LineStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug)]
pub(crate) struct ChunkScanner(Chunk);

impl ChunkScanner {
    pub(crate) fn new() -> Self {
        ChunkScanner(Chunk::Size { val: 0, digits: 0 })
    }

    /// How many of `buf`'s bytes belong to the body, and whether the body ends there; `Err` for
    /// a malformed body.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<(usize, bool), ()> {
        let mut i = 0;
        while i < buf.len() {
            if let Chunk::Data(n) = self.0 {
                let k = n.min((buf.len() - i) as u64);
                i += k as usize;
                self.0 = if k == n {
                    Chunk::DataCr
                } else {
                    Chunk::Data(n - k)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.0 = match (self.0, b) {
                (Chunk::Size { val, digits }, _) if b.is_ascii_hexdigit() && digits < 15 => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    Chunk::Size {
                        val: val * 16 + d,
                        digits: digits + 1,
                    }
                }
                (Chunk::Size { val, digits }, b';' | b' ' | b'\t') if digits > 0 => Chunk::Ext(val),
                (Chunk::Size { val, digits }, b'\r') if digits > 0 => Chunk::SizeLf(val),
                (Chunk::Ext(val), b'\r') => Chunk::SizeLf(val),
                (Chunk::Ext(_), b'\n') => return Err(()),
                (Chunk::Ext(val), _) => Chunk::Ext(val),
                (Chunk::SizeLf(0), b'\n') => Chunk::LineStart,
                (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size { val: 0, digits: 0 },
                (Chunk::LineStart, b'\r') => Chunk::EndLf,
                (Chunk::LineStart, b'\n') => return Err(()),
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::Trailer, b'\n') => return Err(()),
                (Chunk::LineStart | Chunk::Trailer, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n') => Chunk::LineStart,
                (Chunk::EndLf, b'\n') => {
                    self.0 = Chunk::Done;
                    return Ok((i, true));
                }
                (Chunk::Done, _) => return Ok((i - 1, true)),
                _ => return Err(()),
            };
        }
        Ok((i, self.0 == Chunk::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkScanner;

    const BODY: &[u8] =
        b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nx-checksum: 12\r\n\r\n";

    #[test]
    fn finds_the_end_of_a_chunked_body_however_it_is_split() {
        let mut next = b"HTTP/1.1 200 OK\r\n".to_vec();
        let mut all = BODY.to_vec();
        all.append(&mut next);
        for split in 0..=BODY.len() {
            let mut s = ChunkScanner::new();
            let (a, done) = s.scan(&all[..split]).unwrap();
            assert_eq!(a, split, "split at {split}: all of the first piece is body");
            assert_eq!(done, split == BODY.len());
            if done {
                continue;
            }
            let (b, done) = s.scan(&all[split..]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(
                split + b,
                BODY.len(),
                "split at {split}: stops where the body ends"
            );
        }
        // Byte by byte.
        let mut s = ChunkScanner::new();
        for (i, b) in BODY.iter().enumerate() {
            let (n, done) = s.scan(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            assert_eq!(done, i == BODY.len() - 1);
        }
    }

    #[test]
    fn an_empty_body_ends_at_once() {
        let mut s = ChunkScanner::new();
        assert_eq!(s.scan(b"0\r\n\r\nrest").unwrap(), (5, true));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX",
            b"4\nWiki",
            b"fffffffffffffffff\r\n",
            b"0\r\n\n",
            b"0\r\nx: a\n\r\n",
        ] {
            assert!(ChunkScanner::new().scan(bad).is_err(), "{bad:?}");
        }
    }
}
