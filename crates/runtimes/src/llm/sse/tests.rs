//! Tests of the SSE decoder: the line rules one by one, and properties over arbitrary input split
//! at arbitrary points.

use proptest::prelude::*;

use super::*;

fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk, &mut out).unwrap();
    }
    decoder.finish(&mut out);
    out
}

fn decode(text: &str) -> Vec<SseEvent> {
    decode_chunks(&[text.as_bytes()])
}

fn data(d: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: d.to_owned(),
    }
}

#[test]
fn one_event_per_blank_line() {
    assert_eq!(
        decode("data: {\"a\":1}\n\ndata: [DONE]\n\n"),
        vec![data("{\"a\":1}"), data("[DONE]")]
    );
}

#[test]
fn multi_line_data_is_joined_with_newlines() {
    assert_eq!(
        decode("data: one\ndata: two\ndata:three\n\n"),
        vec![data("one\ntwo\nthree")]
    );
}

#[test]
fn every_line_ending_is_accepted() {
    let expected = vec![data("a\nb"), data("c")];
    assert_eq!(
        decode("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
        expected
    );
    assert_eq!(decode("data: a\rdata: b\r\rdata: c\r\r"), expected);
    assert_eq!(
        decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\ndata: c\r\n\r\n"]),
        expected
    );
}

#[test]
fn comments_and_unknown_fields_are_ignored() {
    assert_eq!(
        decode(": keep-alive\n\nid: 7\nretry: 100\nfoo: bar\ndata: x\n: more\n\n"),
        vec![data("x")]
    );
    // A comment alone dispatches nothing, nor does a blank line without data.
    assert_eq!(decode(": ping\n\n\n\n"), vec![]);
}

#[test]
fn event_names_are_kept_and_reset_per_event() {
    assert_eq!(
        decode("event: error\ndata: {}\n\ndata: y\n\n"),
        vec![
            SseEvent {
                event: Some("error".to_owned()),
                data: "{}".to_owned()
            },
            data("y")
        ]
    );
}

#[test]
fn field_without_colon_and_value_spacing() {
    // Only one leading space is stripped; `data` with no colon is an empty data line.
    assert_eq!(decode("data:  two spaces\n\n"), vec![data(" two spaces")]);
    assert_eq!(decode("data\ndata\n\n"), vec![data("\n")]);
}

#[test]
fn an_unterminated_last_event_is_still_dispatched() {
    assert_eq!(
        decode("data: a\n\ndata: [DONE]"),
        vec![data("a"), data("[DONE]")]
    );
    assert_eq!(decode("data: a\n"), vec![data("a")]);
}

#[test]
fn utf8_split_inside_a_character_arrives_whole() {
    let text = "data: 日本語 ✓ 🦀\n\n".as_bytes();
    for split in 0..text.len() {
        assert_eq!(
            decode_chunks(&[&text[..split], &text[split..]]),
            vec![data("日本語 ✓ 🦀")],
            "split at {split}"
        );
    }
}

#[test]
fn a_leading_bom_is_skipped() {
    assert_eq!(decode("\u{feff}data: a\n\n"), vec![data("a")]);
}

#[test]
fn a_runaway_line_is_refused() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let block = vec![b'x'; 1024 * 1024];
    let mut result = Ok(());
    for _ in 0..=MAX_LINE_BYTES / block.len() {
        result = decoder.push(&block, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(LineTooLong));
}

/// Splits `bytes` at the given points (taken modulo the length, sorted).
fn split_at_points(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

fn decode_owned(chunks: &[Vec<u8>]) -> Vec<SseEvent> {
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    decode_chunks(&refs)
}

/// An SSE-shaped body: mostly the bytes that matter to the grammar, plus arbitrary UTF-8.
fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: e".to_vec()),
        Just(b": c".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just("é🦀".as_bytes().to_vec()),
        any::<String>().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_splitting_changes_nothing(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = decode_owned(std::slice::from_ref(&bytes));
        prop_assert_eq!(decode_owned(&split_at_points(&bytes, &points)), whole.clone());
        let single_bytes: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(decode_owned(&single_bytes), whole);
    }

    #[test]
    fn sse_shaped_input_decodes_the_same_however_split(
        bytes in sse_like(),
        points in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = decode_owned(std::slice::from_ref(&bytes));
        prop_assert_eq!(decode_owned(&split_at_points(&bytes, &points)), whole);
    }

    #[test]
    fn encoded_events_round_trip(
        payloads in proptest::collection::vec("[^\r\n]{0,20}", 1..6),
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        points in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let body: String = payloads
            .iter()
            .map(|p| format!("data: {p}{ending}: keep-alive{ending}{ending}"))
            .collect();
        let expected: Vec<SseEvent> = payloads.iter().map(|p| data(p)).collect();
        prop_assert_eq!(decode_owned(&split_at_points(body.as_bytes(), &points)), expected);
    }
}
