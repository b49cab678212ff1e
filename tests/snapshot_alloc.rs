//! A snapshot whose checksum matches but whose content claims a huge length is an
//! error, not an allocation that aborts the process (its own test binary: an abort
//! would take every test of the binary with it).

/// The snapshot's strings borrow from the file's bytes, so bincode checks a claimed
/// length of 2^40 against the bytes there are before allocating anything. The CRC
/// matches (a file written by a bug, a tool, or by hand), so only this check stands
/// between the length and the allocator.
#[test]
fn a_snapshot_claiming_a_huge_string_is_an_error_not_an_allocation() {
    fn header(magic: &[u8; 8], generation: u64) -> Vec<u8> {
        let mut h = magic.to_vec();
        h.extend_from_slice(&2u32.to_le_bytes());
        h.extend_from_slice(&generation.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // ids: none; forgotten: none; events: one, whose user claims 2^40 bytes.
    let mut payload = vec![0u8, 0, 1, 0xFD];
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    payload.extend_from_slice(b"u1");
    let mut snap = header(b"SRSNAP\0\0", 1);
    snap.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    snap.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    snap.extend_from_slice(&payload);
    std::fs::write(dir.join("snapshot.bin"), snap).unwrap();
    std::fs::write(dir.join("log.bin"), header(b"SRLOG\0\0\0", 1)).unwrap();
    let err = shelfrank::EventStore::open_read_only(dir).unwrap_err();
    assert!(err.to_string().contains("snapshot.bin"), "{err}");
}
