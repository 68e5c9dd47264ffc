//! Short byte strings kept inline: cached names and answers, query log names.

/// Bytes kept inline when they fit in `N`, on the heap otherwise: what a hit reads
/// then sits next to what brought it there, instead of behind one more pointer (each
/// pointer followed was a cache miss, a tenth of the answer path).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum InlineBytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    pub(crate) fn new(b: &[u8]) -> Self {
        if b.len() <= N && b.len() <= usize::from(u8::MAX) {
            let mut bytes = [0u8; N];
            bytes[..b.len()].copy_from_slice(b);
            InlineBytes::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            InlineBytes::Heap(b.into())
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            InlineBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            InlineBytes::Heap(b) => b,
        }
    }

    /// The bytes as text; made from a whole `&str`, so always UTF-8 (else empty).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.as_bytes().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bytes_stay_inline_and_long_ones_go_to_the_heap() {
        let short = InlineBytes::<8>::new(b"a.test");
        assert!(matches!(short, InlineBytes::Inline { .. }));
        assert_eq!(short.as_str(), "a.test");
        let long = InlineBytes::<8>::new(b"longer.test");
        assert!(matches!(long, InlineBytes::Heap(_)));
        assert_eq!(long.as_bytes(), b"longer.test");
        // The length is a byte: past 255, the heap even when N is larger.
        let big = InlineBytes::<300>::new(&[7u8; 256]);
        assert!(matches!(big, InlineBytes::Heap(_)));
    }
}
