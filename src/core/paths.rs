//! Relative paths held once, front-coded: per-file state that stays small at 500k files.
//!
//! A scan and a manifest hold every relative path of a cache. Held as one allocation each
//! (`Vec<u8>`), the paths of a 10 GB Gradle home (488k entries of about 126 bytes) took 72 MiB
//! of heap, plus a 24-byte vector per entry; sorted, neighbours share most of their bytes
//! (`caches/modules-2/files-2.1/GROUP/ARTIFACT/VERSION/`), so each path here is stored as the
//! length it shares with the path before it and the bytes after that, about 30 bytes per Gradle
//! file (issue 9: memory flat in the size of the cache). Every `RESTART`-th path is stored
//! whole, so reading any one path decodes at most `RESTART` paths.

/// Every this many paths, one is stored whole: the most a random read decodes.
const RESTART: usize = 16;

/// A list of byte paths, front-coded (best when pushed in sorted order, correct in any order).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PathList {
    /// Per path: varint length shared with the previous path, varint length of the rest, the
    /// rest.
    bytes: Vec<u8>,
    /// Where every `RESTART`-th path starts in `bytes` (its shared length is 0).
    restarts: Vec<usize>,
    len: usize,
    /// The last path pushed, which the next is coded against.
    last: Vec<u8>,
}

impl std::fmt::Debug for PathList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|path| String::from_utf8_lossy(&path).into_owned())).finish()
    }
}

impl PathList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a path.
    pub fn push(&mut self, path: &[u8]) {
        let shared = if self.len.is_multiple_of(RESTART) {
            self.restarts.push(self.bytes.len());
            0
        } else {
            self.last.iter().zip(path).take_while(|(a, b)| a == b).count()
        };
        write_varint(&mut self.bytes, shared);
        write_varint(&mut self.bytes, path.len() - shared);
        self.bytes.extend_from_slice(&path[shared..]);
        self.last.clear();
        self.last.extend_from_slice(path);
        self.len += 1;
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees the room reserved for more paths (once the list is complete).
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.restarts.shrink_to_fit();
        self.last = Vec::new();
    }

    /// Path `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub fn get(&self, index: usize) -> Vec<u8> {
        assert!(index < self.len, "path {index} of {}", self.len);
        let mut cursor = self.cursor_at_restart(index / RESTART);
        for _ in 0..=index % RESTART {
            cursor.advance();
        }
        cursor.current
    }

    /// Every path in order, each as a new vector.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Vec<u8>> + '_ {
        self.iter_from(0)
    }

    /// The paths from `start` on, in order, each as a new vector.
    pub fn iter_from(&self, start: usize) -> impl ExactSizeIterator<Item = Vec<u8>> + '_ {
        let start = start.min(self.len);
        let mut cursor = self.cursor_at_restart(start / RESTART);
        if start < self.len {
            for _ in 0..start % RESTART {
                cursor.advance();
            }
        }
        (start..self.len).map(move |_| {
            cursor.advance();
            cursor.current.clone()
        })
    }

    /// The path that starts block `block` (stored whole).
    fn restart_path(&self, block: usize) -> &[u8] {
        let mut at = self.restarts[block];
        let shared = read_varint(&self.bytes, &mut at);
        debug_assert_eq!(shared, 0);
        let rest = read_varint(&self.bytes, &mut at);
        &self.bytes[at..at + rest]
    }

    /// The index of the first path at or after which `is_before` turns false, given that
    /// `is_before(index, path)` is true for a prefix of the list and false after it (as for a
    /// sorted list and "is this before what I look for").
    pub fn partition_point(&self, mut is_before: impl FnMut(usize, &[u8]) -> bool) -> usize {
        if self.len == 0 {
            return 0;
        }
        // The last block whose first path is before the target, then a walk through it.
        let (mut low, mut high) = (0, self.restarts.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if is_before(middle * RESTART, self.restart_path(middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let Some(block) = low.checked_sub(1) else { return 0 };
        let mut cursor = self.cursor_at_restart(block);
        let end = ((block + 1) * RESTART).min(self.len);
        for index in block * RESTART..end {
            cursor.advance();
            if !is_before(index, &cursor.current) {
                return index;
            }
        }
        end
    }

    fn cursor_at_restart(&self, block: usize) -> Cursor<'_> {
        Cursor {
            bytes: &self.bytes,
            at: self.restarts.get(block).copied().unwrap_or(self.bytes.len()),
            current: Vec::new(),
        }
    }
}

impl<'a> FromIterator<&'a [u8]> for PathList {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(paths: I) -> Self {
        let mut list = Self::new();
        for path in paths {
            list.push(path);
        }
        list.shrink_to_fit();
        list
    }
}

/// Decodes paths forward from a restart point.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    current: Vec<u8>,
}

impl Cursor<'_> {
    fn advance(&mut self) {
        let shared = read_varint(self.bytes, &mut self.at);
        let rest = read_varint(self.bytes, &mut self.at);
        self.current.truncate(shared);
        self.current.extend_from_slice(&self.bytes[self.at..self.at + rest]);
        self.at += rest;
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint this module wrote (the bytes are never from outside).
fn read_varint(bytes: &[u8], at: &mut usize) -> usize {
    let mut value = 0;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Vec<u8>> {
        let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
        for group in 0..7 {
            for version in 0..5 {
                paths.push(format!("caches/modules-2/files-2.1/org.g{group}").into_bytes());
                paths.push(format!("caches/modules-2/files-2.1/org.g{group}/v{version}/a-{version}.jar").into_bytes());
                paths.push(format!("caches/modules-2/files-2.1/org.g{group}/v{version}/\u{e9}\0\u{ff}").into_bytes());
            }
        }
        paths.push(vec![b'x'; 300]);
        paths.push(b"z".to_vec());
        paths.sort();
        paths.dedup();
        paths
    }

    #[test]
    fn every_path_reads_back_in_order_and_at_random() {
        let paths = sample();
        let list: PathList = paths.iter().map(Vec::as_slice).collect();
        assert_eq!(list.len(), paths.len());
        assert_eq!(list.iter().collect::<Vec<_>>(), paths);
        for (index, path) in paths.iter().enumerate().rev() {
            assert_eq!(&list.get(index), path, "path {index}");
            assert_eq!(list.iter_from(index).collect::<Vec<_>>(), paths[index..], "from {index}");
        }
        assert_eq!(list.iter_from(paths.len()).count(), 0);
    }

    #[test]
    fn sorted_neighbours_are_stored_in_a_fraction_of_their_bytes() {
        let paths = sample();
        let list: PathList = paths.iter().map(Vec::as_slice).collect();
        let whole: usize = paths.iter().map(Vec::len).sum();
        assert!(list.bytes.len() * 3 < whole, "{} of {whole} bytes", list.bytes.len());
    }

    #[test]
    fn partition_point_finds_each_path_and_the_gaps_between() {
        let paths = sample();
        let list: PathList = paths.iter().map(Vec::as_slice).collect();
        for (index, path) in paths.iter().enumerate() {
            assert_eq!(list.partition_point(|_, p| p < path.as_slice()), index);
            let mut after = path.clone();
            after.push(0);
            assert_eq!(list.partition_point(|_, p| p < after.as_slice()), index + 1);
        }
        assert_eq!(list.partition_point(|_, _| true), paths.len());
        assert_eq!(PathList::new().partition_point(|_, _| true), 0);
        // The index is passed along with the path.
        assert_eq!(list.partition_point(|index, _| index < 20), 20);
    }

    #[test]
    fn an_empty_list_and_any_order_work() {
        let list = PathList::new();
        assert!(list.is_empty() && list.iter().next().is_none());
        let unsorted: Vec<&[u8]> = vec![b"b/c", b"a", b"b/c/d", b"", b"b/c"];
        let list: PathList = unsorted.iter().copied().collect();
        assert_eq!(list.iter().collect::<Vec<_>>(), unsorted.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
    }
}
