//! Minimal `.npy` reader and writer (NumPy format versions 1.0, 2.0 and 3.0).
//!
//! Reading validates before it trusts: the magic string, the version, the header's Python-literal
//! syntax, the dtype (object/pickled and structured dtypes are refused), and that the data size the
//! shape implies matches the file exactly. What a file controls is bounded before it is used: the
//! header is at most [`MAX_HEADER_LEN`] bytes, its literals nest at most [`MAX_NESTING`] levels
//! (the parser recurses once per level), element counts and byte sizes are computed with checked
//! arithmetic, and zero-width string types (which would let a tiny file declare any number of
//! elements) are refused. Writing always produces version 1.0 headers padded so the
//! data starts on a 64-byte boundary, as NumPy itself writes them.

use crate::error::{Result, input};
use std::io::Write;
use std::path::Path;

/// The six-byte magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header accepted, in bytes (NumPy writes under 200 for plain arrays; `np.load` itself
/// refuses headers over 10,000 bytes by default).
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Deepest nesting of tuples, lists and dicts accepted in a header (a plain header nests 2).
pub const MAX_NESTING: usize = 32;

/// Element types the reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    Bool,
    /// NumPy `U<n>`: `n` UTF-32 code points per element, NUL-padded.
    Unicode(usize),
    /// NumPy `S<n>`: `n` bytes per element, NUL-padded.
    Bytes(usize),
}

impl DType {
    /// Bytes per element.
    pub fn item_size(self) -> usize {
        match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
            DType::Unicode(n) => n.saturating_mul(4),
            DType::Bytes(n) => n,
        }
    }

    /// True for the integer, float and bool types (values convertible to numbers).
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::Unicode(_) | DType::Bytes(_))
    }

    /// NumPy's `descr` string for this type (`<u1`, `>f8`, `<U12`, ...).
    pub fn descr(self, little_endian: bool) -> String {
        let order = if self.item_size() == 1 && !matches!(self, DType::Unicode(_)) {
            '|'
        } else if little_endian {
            '<'
        } else {
            '>'
        };
        let code = match self {
            DType::U8 => "u1".to_string(),
            DType::I8 => "i1".to_string(),
            DType::U16 => "u2".to_string(),
            DType::I16 => "i2".to_string(),
            DType::U32 => "u4".to_string(),
            DType::I32 => "i4".to_string(),
            DType::U64 => "u8".to_string(),
            DType::I64 => "i8".to_string(),
            DType::F32 => "f4".to_string(),
            DType::F64 => "f8".to_string(),
            DType::Bool => "b1".to_string(),
            DType::Unicode(n) => format!("U{n}"),
            DType::Bytes(n) => format!("S{n}"),
        };
        format!("{order}{code}")
    }

    /// Parses a NumPy `descr` string; returns the type and whether it is little-endian.
    fn parse(descr: &str, path: &Path) -> Result<(DType, bool)> {
        let bad = |why: &str| input(path, format!("unsupported dtype `{descr}`: {why}"));
        let mut chars = descr.chars();
        let (order, rest) = match chars.next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
            _ => ('|', descr),
        };
        if rest.starts_with('O') {
            return Err(input(
                path,
                format!(
                    "object dtype `{descr}` (pickled Python objects) is not supported; \
                     save a plain numeric or string array (e.g. np.asarray(x, dtype=np.int64))"
                ),
            ));
        }
        let kind = rest.chars().next().ok_or_else(|| bad("empty type code"))?;
        let size: usize = rest[kind.len_utf8()..]
            .parse()
            .map_err(|_| bad("no element size"))?;
        if matches!(kind, 'U' | 'S' | 'a') && (size == 0 || size > isize::MAX as usize / 4) {
            return Err(bad("a string width must be at least 1 and fit in memory"));
        }
        let dtype = match (kind, size) {
            ('u', 1) => DType::U8,
            ('i', 1) => DType::I8,
            ('u', 2) => DType::U16,
            ('i', 2) => DType::I16,
            ('u', 4) => DType::U32,
            ('i', 4) => DType::I32,
            ('u', 8) => DType::U64,
            ('i', 8) => DType::I64,
            ('f', 4) => DType::F32,
            ('f', 8) => DType::F64,
            ('b', 1) => DType::Bool,
            ('U', n) => DType::Unicode(n),
            ('S', n) | ('a', n) => DType::Bytes(n),
            _ => {
                return Err(bad(
                    "expected an integer (u1..u8, i1..i8), float (f4, f8), bool, or string (U, S) type",
                ));
            }
        };
        let little = match order {
            '>' => false,
            '<' | '|' => true,
            _ => cfg!(target_endian = "little"),
        };
        Ok((dtype, little))
    }
}

/// The parsed header of a `.npy` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: DType,
    pub little_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (1 for a 0-d array); saturates where `parse_header` would refuse.
    pub fn n_elements(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Size of the data section in bytes; saturates where `parse_header` would refuse.
    pub fn data_len(&self) -> usize {
        self.n_elements().saturating_mul(self.dtype.item_size())
    }

    /// Checks that a file of `file_len` bytes holds exactly the data this header describes.
    pub fn check_len(&self, file_len: usize, path: &Path) -> Result<()> {
        let want = self.data_offset.saturating_add(self.data_len());
        if file_len < want {
            return Err(input(
                path,
                format!(
                    "truncated .npy file: shape {:?} of {} needs {} bytes of data, the file has {}",
                    self.shape,
                    self.dtype.descr(self.little_endian),
                    self.data_len(),
                    file_len.saturating_sub(self.data_offset)
                ),
            ));
        }
        if file_len > want {
            return Err(input(
                path,
                format!(
                    "corrupt .npy file: {} unexpected bytes after the data of shape {:?}",
                    file_len - want,
                    self.shape
                ),
            ));
        }
        Ok(())
    }

    /// Flat index (in storage order) of the element at C-order flat index `c_index`.
    pub fn storage_index(&self, c_index: usize) -> usize {
        if !self.fortran_order || self.shape.len() < 2 {
            return c_index;
        }
        let mut rem = c_index;
        let mut idx = vec![0usize; self.shape.len()];
        for (d, &s) in self.shape.iter().enumerate().rev() {
            idx[d] = rem % s;
            rem /= s;
        }
        let mut f = 0;
        for (d, &s) in self.shape.iter().enumerate().rev() {
            f = f * s + idx[d];
        }
        f
    }
}

/// Parses the header at the start of `bytes` (the whole file, or at least its header).
/// `path` names the file in errors. Does not check the file length: see [`NpyHeader::check_len`].
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(input(
            path,
            "not a .npy file (wrong magic: expected the bytes \\x93NUMPY at the start)",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(input(
                path,
                format!("unsupported .npy format version {major}.{minor} (1.0, 2.0, 3.0 are read)"),
            ));
        }
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err(input(path, "truncated .npy file: header length missing"));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    if header_len > MAX_HEADER_LEN {
        return Err(input(
            path,
            format!(
                "corrupt .npy header: {header_len} bytes long, more than the {MAX_HEADER_LEN} \
                 accepted"
            ),
        ));
    }
    let end = start + header_len;
    if bytes.len() < end {
        return Err(input(
            path,
            format!(
                "truncated .npy file: header of {header_len} bytes, file has {}",
                bytes.len() - start
            ),
        ));
    }
    let raw = &bytes[start..end];
    let text: String = if utf8 {
        std::str::from_utf8(raw)
            .map_err(|_| input(path, "corrupt .npy header: not UTF-8"))?
            .to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    let dict = literal::parse_dict(&text).map_err(|e| {
        input(
            path,
            format!("corrupt .npy header: {e} in `{}`", text.trim_end()),
        )
    })?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", literal::Value::Str(s)) => descr = Some(s),
            ("descr", literal::Value::List(_)) => {
                return Err(input(
                    path,
                    "structured (record) dtype is not supported; save one plain array per field",
                ));
            }
            ("fortran_order", literal::Value::Bool(b)) => fortran = Some(b),
            ("shape", literal::Value::Tuple(items)) => {
                let mut dims = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        literal::Value::Int(n) if n >= 0 => dims.push(n as usize),
                        _ => {
                            return Err(input(
                                path,
                                "corrupt .npy header: shape holds a non-integer or negative entry",
                            ));
                        }
                    }
                }
                shape = Some(dims);
            }
            (key @ ("descr" | "fortran_order" | "shape"), _) => {
                return Err(input(
                    path,
                    format!("corrupt .npy header: `{key}` has the wrong type"),
                ));
            }
            _ => {}
        }
    }
    let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran, shape) else {
        return Err(input(
            path,
            "corrupt .npy header: needs the keys descr, fortran_order and shape",
        ));
    };
    let (dtype, little_endian) = DType::parse(&descr, path)?;
    // The element count and byte size must fit in memory arithmetic.
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.item_size()))
        .and_then(|b| b.checked_add(end));
    if n.is_none() {
        return Err(input(
            path,
            format!("corrupt .npy header: shape {shape:?} is too large"),
        ));
    }
    Ok(NpyHeader {
        dtype,
        little_endian,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// A whole `.npy` array read into memory, header validated against the data length.
#[derive(Clone, Debug)]
pub struct NpyArray {
    pub header: NpyHeader,
    /// The whole file; elements start at `header.data_offset`.
    pub bytes: Vec<u8>,
}

impl NpyArray {
    /// Validates `bytes` (a whole `.npy` file) and keeps them; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<NpyArray> {
        let header = parse_header(&bytes, path)?;
        header.check_len(bytes.len(), path)?;
        Ok(NpyArray { header, bytes })
    }

    /// Reads and validates the `.npy` file at `path` (a regular file: see `fsutil::read_regular`).
    pub fn read(path: &Path) -> Result<NpyArray> {
        let bytes = crate::fsutil::read_regular(path)?;
        NpyArray::from_bytes(bytes, path)
    }

    pub fn shape(&self) -> &[usize] {
        &self.header.shape
    }

    /// The data section.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.header.data_offset..]
    }

    /// Numeric element at storage index `i` (not C-order unless the array is C-ordered)
    /// as f64; 64-bit integers beyond 2^53 are rounded, which keeps their sign and magnitude
    /// class (what the range checks of the importers need).
    pub fn value_at_storage(&self, i: usize) -> f64 {
        decode(self.header.dtype, self.header.little_endian, self.data(), i)
    }

    /// All elements as f64 in C order. Errors on string dtypes.
    pub fn to_f64(&self, path: &Path) -> Result<Vec<f64>> {
        if !self.header.dtype.is_numeric() {
            return Err(input(
                path,
                format!(
                    "expected a numeric array, found dtype {}",
                    self.header.dtype.descr(self.header.little_endian)
                ),
            ));
        }
        let n = self.header.n_elements();
        Ok((0..n)
            .map(|i| self.value_at_storage(self.header.storage_index(i)))
            .collect())
    }

    /// All elements of a string array (`U` or `S`) in C order, trailing NULs removed.
    pub fn to_strings(&self, path: &Path) -> Result<Vec<String>> {
        let n = self.header.n_elements();
        let data = self.data();
        match self.header.dtype {
            DType::Unicode(w) => (0..n)
                .map(|i| {
                    let at = self.header.storage_index(i) * 4 * w;
                    let mut s = String::with_capacity(w);
                    for k in 0..w {
                        let b: [u8; 4] = data[at + 4 * k..at + 4 * k + 4]
                            .try_into()
                            .expect("4-byte chunk");
                        let cp = if self.header.little_endian {
                            u32::from_le_bytes(b)
                        } else {
                            u32::from_be_bytes(b)
                        };
                        if cp == 0 {
                            break;
                        }
                        s.push(char::from_u32(cp).ok_or_else(|| {
                            input(
                                path,
                                format!("invalid unicode code point {cp:#x} in element {i}"),
                            )
                        })?);
                    }
                    Ok(s)
                })
                .collect(),
            DType::Bytes(w) => (0..n)
                .map(|i| {
                    let at = self.header.storage_index(i) * w;
                    let raw = &data[at..at + w];
                    let len = raw.iter().position(|&b| b == 0).unwrap_or(w);
                    String::from_utf8(raw[..len].to_vec())
                        .map_err(|_| input(path, format!("element {i} is not UTF-8 text")))
                })
                .collect(),
            other => Err(input(
                path,
                format!(
                    "expected a string array (dtype U or S), found {}",
                    other.descr(self.header.little_endian)
                ),
            )),
        }
    }
}

/// Decodes numeric element `i` (storage order) of `data` as f64.
pub fn decode(dtype: DType, little: bool, data: &[u8], i: usize) -> f64 {
    macro_rules! get {
        ($t:ty, $n:expr) => {{
            let b: [u8; $n] = data[i * $n..i * $n + $n].try_into().expect("element bytes");
            if little {
                <$t>::from_le_bytes(b)
            } else {
                <$t>::from_be_bytes(b)
            }
        }};
    }
    match dtype {
        DType::U8 => data[i] as f64,
        DType::I8 => data[i] as i8 as f64,
        DType::Bool => (data[i] != 0) as u8 as f64,
        DType::U16 => get!(u16, 2) as f64,
        DType::I16 => get!(i16, 2) as f64,
        DType::U32 => get!(u32, 4) as f64,
        DType::I32 => get!(i32, 4) as f64,
        DType::U64 => get!(u64, 8) as f64,
        DType::I64 => get!(i64, 8) as f64,
        DType::F32 => get!(f32, 4) as f64,
        DType::F64 => get!(f64, 8),
        DType::Unicode(_) | DType::Bytes(_) => f64::NAN,
    }
}

/// A version 1.0 header (little-endian, C order) for `dtype` and `shape`, padded with spaces and a
/// newline so that the data starts at a multiple of 64 bytes.
pub fn header_bytes(dtype: DType, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(true),
        shape_txt
    );
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(unpadded + pad);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes a whole little-endian C-order array atomically. `data` holds the raw element bytes.
pub fn write_npy(path: &Path, dtype: DType, shape: &[usize], data: &[u8]) -> Result<()> {
    debug_assert_eq!(
        data.len(),
        shape.iter().product::<usize>() * dtype.item_size()
    );
    let header = header_bytes(dtype, shape);
    crate::fsutil::write_atomic_with(path, |w| {
        w.write_all(&header)?;
        w.write_all(data)
    })
}

/// `uint8` array.
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<()> {
    write_npy(path, DType::U8, shape, data)
}

/// `int8` array.
pub fn write_npy_i8(path: &Path, shape: &[usize], data: &[i8]) -> Result<()> {
    write_npy(path, DType::I8, shape, bytemuck::cast_slice(data))
}

/// `float32` array.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, DType::F32, shape, &bytes)
}

/// 1-d unicode (`<U<n>`) array with `n` the longest string's length in code points.
pub fn write_npy_unicode(path: &Path, strings: &[String]) -> Result<()> {
    let width = strings
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bytes = Vec::with_capacity(strings.len() * width * 4);
    for s in strings {
        let mut k = 0;
        for c in s.chars() {
            bytes.extend_from_slice(&(c as u32).to_le_bytes());
            k += 1;
        }
        bytes.extend(std::iter::repeat_n(0u8, 4 * (width - k)));
    }
    write_npy(path, DType::Unicode(width), &[strings.len()], &bytes)
}

/// A parser for the Python literal subset NumPy writes in headers: a dict of string keys whose
/// values are strings, booleans, None, integers, tuples and lists.
mod literal {
    #[derive(Clone, Debug, PartialEq)]
    pub enum Value {
        Str(String),
        Int(i64),
        Bool(bool),
        None,
        Tuple(Vec<Value>),
        List(Vec<Value>),
        Dict(Vec<(String, Value)>),
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
        /// Containers open around the current position (bounded by `MAX_NESTING`).
        depth: usize,
    }

    pub fn parse_dict(text: &str) -> Result<Vec<(String, Value)>, String> {
        let mut p = P {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text at byte {}", p.i));
        }
        match v {
            Value::Dict(d) => Ok(d),
            _ => Err("header is not a dict".into()),
        }
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.s.get(self.i).copied()
        }

        fn expect(&mut self, c: u8) -> Result<(), String> {
            if self.peek() == Some(c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {}", c as char, self.i))
            }
        }

        /// Parses one value. Containers recurse, one level per open bracket, so the depth is
        /// checked before going down: a header cannot drive the recursion past `MAX_NESTING`.
        fn value(&mut self) -> Result<Value, String> {
            if matches!(self.peek(), Some(b'{' | b'(' | b'[')) {
                if self.depth >= super::MAX_NESTING {
                    return Err(format!(
                        "literals nested deeper than {} levels at byte {}",
                        super::MAX_NESTING,
                        self.i
                    ));
                }
                self.depth += 1;
                let v = self.value_inner();
                self.depth -= 1;
                return v;
            }
            self.value_inner()
        }

        fn value_inner(&mut self) -> Result<Value, String> {
            match self.peek() {
                Some(b'{') => self.dict(),
                Some(b'(') => {
                    self.i += 1;
                    Ok(Value::Tuple(self.seq(b')')?))
                }
                Some(b'[') => {
                    self.i += 1;
                    Ok(Value::List(self.seq(b']')?))
                }
                Some(q @ (b'\'' | b'"')) => self.string(q).map(Value::Str),
                Some(c) if c == b'-' || c.is_ascii_digit() => self.int(),
                Some(c) if c.is_ascii_alphabetic() => {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                        self.i += 1;
                    }
                    match &self.s[start..self.i] {
                        b"True" => Ok(Value::Bool(true)),
                        b"False" => Ok(Value::Bool(false)),
                        b"None" => Ok(Value::None),
                        w => Err(format!("unknown word `{}`", String::from_utf8_lossy(w))),
                    }
                }
                Some(c) => Err(format!("unexpected `{}` at byte {}", c as char, self.i)),
                None => Err("unexpected end of header".into()),
            }
        }

        fn dict(&mut self) -> Result<Value, String> {
            self.expect(b'{')?;
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(Value::Dict(out));
                    }
                    Some(q @ (b'\'' | b'"')) => {
                        let k = self.string(q)?;
                        self.expect(b':')?;
                        let v = self.value()?;
                        out.push((k, v));
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {}
                            _ => return Err(format!("expected `,` or `}}` at byte {}", self.i)),
                        }
                    }
                    _ => return Err(format!("expected a string key at byte {}", self.i)),
                }
            }
        }

        fn seq(&mut self, close: u8) -> Result<Vec<Value>, String> {
            let mut out = Vec::new();
            loop {
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(out);
                }
                out.push(self.value()?);
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => {}
                    _ => {
                        return Err(format!(
                            "expected `,` or `{}` at byte {}",
                            close as char, self.i
                        ));
                    }
                }
            }
        }

        fn string(&mut self, q: u8) -> Result<String, String> {
            self.i += 1;
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != q {
                if self.s[self.i] == b'\\' {
                    return Err("escape sequences in header strings are not supported".into());
                }
                self.i += 1;
            }
            if self.i >= self.s.len() {
                return Err("unterminated string".into());
            }
            let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            self.i += 1;
            Ok(v)
        }

        fn int(&mut self) -> Result<Value, String> {
            let start = self.i;
            if self.s[self.i] == b'-' {
                self.i += 1;
            }
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            // Python 2 era headers may carry a long suffix: (3L, 4L).
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            if self.i < self.s.len() && self.s[self.i] == b'L' {
                self.i += 1;
            }
            text.parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("bad integer `{text}`"))
        }
    }
}
