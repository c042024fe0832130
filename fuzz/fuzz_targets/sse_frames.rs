//! SSE byte streams from upstreams, cut into arbitrary chunks: the event size limit (both
//! when failing and when skipping oversized events), the id read from an oversized
//! message's first bytes, and the SSE parser the transports use on what passes. The
//! limit must hold: no event the parser yields is larger than it.
#![no_main]

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use metamcp_core::framing::{EventLimit, Filtered, leading_id};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = 16 + usize::from(control & 0x3f) * 8;
    let skip = control & 0x40 != 0;
    let chunk = 1 + usize::from(control >> 7) * 7;
    let mut filter = EventLimit::new(limit, skip);
    let mut passed: Vec<bytes::Bytes> = Vec::new();
    for piece in rest.chunks(chunk) {
        let mut report = |prefix: &[u8]| {
            let _ = leading_id(prefix);
        };
        match filter.filter(piece, &mut report) {
            Filtered::Whole => passed.push(bytes::Bytes::copy_from_slice(piece)),
            Filtered::Replaced(kept) => passed.push(kept.into()),
            Filtered::TooLarge => break,
        }
    }
    let stream = futures::stream::iter(passed.into_iter().map(Ok::<_, std::io::Error>));
    let events = sse_stream::SseByteStream::new(stream);
    futures::executor::block_on(events.for_each(|ev| {
        if let Ok(ev) = ev {
            // `data: ` and the line ends are part of the counted bytes, so the data is
            // always shorter than the limit.
            assert!(
                ev.data.as_deref().map_or(0, str::len) <= limit,
                "event over the limit"
            );
        }
        async {}
    }));
});
