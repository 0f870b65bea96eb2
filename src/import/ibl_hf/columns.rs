//! Typed access to the Arrow columns of the IBL HuggingFace releases.
//!
//! The releases were written by `datasets` from Python lists, so the same logical column comes
//! with different physical types: `list<int64>` from `.tolist()`, `list<uint8>` from a typed
//! feature, `large_list<...>` from `datasets.save_to_disk`, fixed-size lists for shapes. These
//! helpers accept every list flavour and every integer width, and say what they found when a
//! column is something else. Errors are plain strings; the caller adds the file and the row.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

/// What a column must hold, for schema checks and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A list of integers (or of floats holding integers).
    IntList,
    /// A list of strings.
    StrList,
    /// A string.
    Str,
    /// A number (or a one-element list of one).
    Number,
}

impl Expect {
    pub fn describe(self) -> &'static str {
        match self {
            Expect::IntList => "a list of integers",
            Expect::StrList => "a list of strings",
            Expect::Str => "a string",
            Expect::Number => "a number",
        }
    }

    /// Whether a column of type `dt` can be read as `self`.
    pub fn accepts(self, dt: &DataType) -> bool {
        match self {
            Expect::IntList => list_item(dt).is_some_and(is_numeric),
            Expect::StrList => list_item(dt).is_some_and(is_string),
            Expect::Str => is_string(dt),
            Expect::Number => is_numeric(dt) || list_item(dt).is_some_and(is_numeric),
        }
    }
}

fn list_item(dt: &DataType) -> Option<&DataType> {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    }
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_numeric(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
    )
}

/// The values of row `row` of a list column, as an array (zero-copy slice).
fn list_value(col: &dyn Array, row: usize) -> Result<ArrayRef, String> {
    if col.is_null(row) {
        return Err("is null".into());
    }
    match col.data_type() {
        DataType::List(_) => Ok(col.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Ok(col.as_list::<i64>().value(row)),
        DataType::FixedSizeList(_, _) => Ok(col.as_fixed_size_list().value(row)),
        other => Err(format!("has type {other}, not a list")),
    }
}

/// Appends the integers of a numeric array to `out`; floats must hold integers.
fn push_ints(values: &dyn Array, out: &mut Vec<i64>) -> Result<(), String> {
    if values.null_count() > 0 {
        return Err("holds null values".into());
    }
    macro_rules! ints {
        ($t:ty) => {
            out.extend(
                values
                    .as_primitive::<$t>()
                    .values()
                    .iter()
                    .map(|&v| v as i64),
            )
        };
    }
    match values.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => {
            for &v in values.as_primitive::<UInt64Type>().values().iter() {
                out.push(i64::try_from(v).map_err(|_| format!("holds {v}, too large"))?);
            }
        }
        DataType::Float32 | DataType::Float64 => {
            let n = values.len();
            for i in 0..n {
                let v = if *values.data_type() == DataType::Float32 {
                    values.as_primitive::<Float32Type>().value(i) as f64
                } else {
                    values.as_primitive::<Float64Type>().value(i)
                };
                if !(v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15) {
                    return Err(format!("holds {v}, not an integer"));
                }
                out.push(v as i64);
            }
        }
        other => return Err(format!("holds {other} values, not integers")),
    }
    Ok(())
}

/// Row `row` of a list-of-integers column, into `out` (cleared first).
pub fn int_list(col: &dyn Array, row: usize, out: &mut Vec<i64>) -> Result<(), String> {
    out.clear();
    let v = list_value(col, row)?;
    push_ints(v.as_ref(), out)
}

/// The string at `row` of a string array, `None` if null.
pub fn string_at(col: &dyn Array, row: usize) -> Result<Option<&str>, String> {
    if col.is_null(row) {
        return Ok(None);
    }
    match col.data_type() {
        DataType::Utf8 => Ok(Some(col.as_string::<i32>().value(row))),
        DataType::LargeUtf8 => Ok(Some(col.as_string::<i64>().value(row))),
        DataType::Utf8View => Ok(Some(col.as_string_view().value(row))),
        other => Err(format!("has type {other}, not a string")),
    }
}

/// Row `row` of a list-of-strings column, into `out` (cleared first).
pub fn string_list(col: &dyn Array, row: usize, out: &mut Vec<String>) -> Result<(), String> {
    out.clear();
    let v = list_value(col, row)?;
    for i in 0..v.len() {
        match string_at(v.as_ref(), i)? {
            Some(s) => out.push(s.to_string()),
            None => return Err(format!("holds a null label at position {i}")),
        }
    }
    Ok(())
}

/// The number at `row` (a scalar column, or a list column holding exactly one value);
/// `None` if null. NaN is returned as NaN for the caller to judge.
pub fn number_at(col: &dyn Array, row: usize) -> Result<Option<f64>, String> {
    if col.is_null(row) {
        return Ok(None);
    }
    if list_item(col.data_type()).is_some() {
        let v = list_value(col, row)?;
        if v.len() != 1 {
            return Err(format!(
                "holds {} values for one trial, expected 1",
                v.len()
            ));
        }
        return number_at(v.as_ref(), 0);
    }
    macro_rules! num {
        ($t:ty) => {
            col.as_primitive::<$t>().value(row) as f64
        };
    }
    Ok(Some(match col.data_type() {
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        other => return Err(format!("has type {other}, not a number")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{
        FixedSizeListBuilder, Int64Builder, LargeListBuilder, ListBuilder, StringBuilder,
        UInt8Builder,
    };
    use arrow_array::{Float64Array, StringArray};

    #[test]
    fn int_lists_of_every_flavour() {
        let mut b = ListBuilder::new(Int64Builder::new());
        b.values().append_slice(&[0, 3, 7]);
        b.append(true);
        b.append(false);
        let list = b.finish();
        let mut out = Vec::new();
        int_list(&list, 0, &mut out).unwrap();
        assert_eq!(out, [0, 3, 7]);
        assert!(int_list(&list, 1, &mut out).unwrap_err().contains("null"));

        let mut b = LargeListBuilder::new(UInt8Builder::new());
        b.values().append_slice(&[1, 255]);
        b.append(true);
        let large = b.finish();
        int_list(&large, 0, &mut out).unwrap();
        assert_eq!(out, [1, 255]);
        assert!(Expect::IntList.accepts(large.data_type()));

        let mut b = FixedSizeListBuilder::new(Int64Builder::new(), 2);
        b.values().append_slice(&[150, 12]);
        b.append(true);
        let fixed = b.finish();
        int_list(&fixed, 0, &mut out).unwrap();
        assert_eq!(out, [150, 12]);
    }

    #[test]
    fn non_integer_floats_are_refused() {
        let mut b = ListBuilder::new(arrow_array::builder::Float64Builder::new());
        b.values().append_slice(&[1.0, 2.5]);
        b.append(true);
        let list = b.finish();
        let mut out = Vec::new();
        assert!(int_list(&list, 0, &mut out).unwrap_err().contains("2.5"));
    }

    #[test]
    fn strings_numbers_and_type_checks() {
        let s = StringArray::from(vec![Some("a"), None]);
        assert_eq!(string_at(&s, 0).unwrap(), Some("a"));
        assert_eq!(string_at(&s, 1).unwrap(), None);
        let f = Float64Array::from(vec![-1.0, 1.0]);
        assert_eq!(number_at(&f, 0).unwrap(), Some(-1.0));
        assert!(number_at(&s, 0).is_err());
        let mut b = ListBuilder::new(StringBuilder::new());
        b.values().append_value("CA1");
        b.values().append_value("DG");
        b.append(true);
        let regions = b.finish();
        let mut out = Vec::new();
        string_list(&regions, 0, &mut out).unwrap();
        assert_eq!(out, ["CA1", "DG"]);
        assert!(Expect::StrList.accepts(regions.data_type()));
        assert!(!Expect::IntList.accepts(regions.data_type()));
        assert!(!Expect::Str.accepts(f.data_type()));
        assert!(Expect::Number.accepts(f.data_type()));
    }
}
