//! Reading a stream into chunks that can be handed on (to a channel, a hasher, a file) without
//! another copy: each chunk is read into one reused buffer and split off it.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

/// Reads up to `size` bytes of `input` (fewer only at its end) as the next chunk; `None` at the
/// end. `buf`'s allocation is reused once the chunks split off it are dropped.
pub fn read_chunk(
    input: &mut impl Read,
    buf: &mut BytesMut,
    size: usize,
) -> io::Result<Option<Bytes>> {
    buf.clear();
    buf.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    if filled == 0 {
        return Ok(None);
    }
    Ok(Some(buf.split().freeze()))
}

/// The chunks of `input`, `size` bytes each but the last.
pub fn chunks<R: Read>(mut input: R, size: usize) -> impl Iterator<Item = io::Result<Bytes>> {
    let mut buf = BytesMut::new();
    std::iter::from_fn(move || read_chunk(&mut input, &mut buf, size).transpose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_full_sized_pieces_but_the_last() {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        // A reader that returns little at a time still yields full chunks.
        let trickle = io::Read::chain(&data[..700], &data[700..]);
        let got: Vec<Bytes> = chunks(trickle, 1000).collect::<io::Result<_>>().unwrap();
        assert_eq!(
            got.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        assert_eq!(got.concat(), data);
    }
}
