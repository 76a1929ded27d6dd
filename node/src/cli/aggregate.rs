//! `byzsgd-node aggregate`: aggregates the vectors of a file with any rule, to cross-check the
//! rules against other libraries (ByzFL, Garfield) or to inspect what a rule keeps.
//!
//! Input: a `.npy` file holding a 2-D float32 or float64 array (one vector per row; float64 is
//! rounded to float32), or a JSON array of arrays of numbers, where the strings `"NaN"`,
//! `"Infinity"`/`"inf"` and `"-Infinity"`/`"-inf"` stand for the non-finite values JSON cannot
//! write. The format is recognised by the `.npy` magic bytes, not by the file name; `-` reads
//! standard input. Output: one JSON object on stdout, or a 1-D float32 `.npy` file with `--out`.
//! Non-finite aggregate values print as `null` (JSON has no NaN).

use std::{
    fs,
    io::{self, BufWriter, Read},
    path::{Path, PathBuf},
};

use anyhow::Context;
use byzsgd_core::gar::{self, GarConfig, PreAggregator, Rule};
use ndarray::{Array1, Array2, ArrayView1};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use serde::Serialize;
use serde_json::Value;

/// Parses `--rule`: every rule name is a possible value (listed by `--help` and in errors); the
/// names are the core's, so the flag, the manifest and the metrics labels spell rules alike.
fn rule_parser() -> impl clap::builder::TypedValueParser<Value = Rule> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Rule::ALL.map(Rule::name))
        .try_map(|name| name.parse::<Rule>())
}

/// Flags of `byzsgd-node aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// Aggregation rule.
    #[arg(long, env = "BYZSGD_AGGREGATE_RULE", value_parser = rule_parser())]
    pub rule: Rule,
    /// Declared number of Byzantine inputs the rule must tolerate.
    #[arg(long, env = "BYZSGD_AGGREGATE_F")]
    pub f: usize,
    /// Multi-Krum only: number of inputs averaged, 1 ≤ m ≤ n − f (default n − f).
    #[arg(long, env = "BYZSGD_AGGREGATE_M")]
    pub m: Option<usize>,
    /// Pre-aggregators run in order before the rule: `nnm`, `bucketing:SIZE`, `clip:MAX_NORM`
    /// (repeat the flag or separate with commas).
    #[arg(long = "pre", env = "BYZSGD_AGGREGATE_PRE", value_delimiter = ',')]
    pub pre: Vec<PreAggregator>,
    /// Centered clipping: clipping radius τ.
    #[arg(long, env = "BYZSGD_AGGREGATE_CC_TAU", default_value_t = GarConfig::DEFAULT_CC_TAU)]
    pub cc_tau: f32,
    /// Centered clipping: number of clipping iterations.
    #[arg(
        long,
        env = "BYZSGD_AGGREGATE_CC_ITERATIONS",
        default_value_t = GarConfig::DEFAULT_CC_ITERATIONS
    )]
    pub cc_iterations: usize,
    /// Geometric median: Weiszfeld smoothing ν.
    #[arg(long, env = "BYZSGD_AGGREGATE_GM_NU", default_value_t = GarConfig::DEFAULT_GM_NU)]
    pub gm_nu: f32,
    /// Geometric median: number of Weiszfeld iterations.
    #[arg(
        long,
        env = "BYZSGD_AGGREGATE_GM_ITERATIONS",
        default_value_t = GarConfig::DEFAULT_GM_ITERATIONS
    )]
    pub gm_iterations: usize,
    /// Seed of the bucketing permutation.
    #[arg(long, env = "BYZSGD_AGGREGATE_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Also print which inputs the rule selected and which it excluded.
    #[arg(long, env = "BYZSGD_AGGREGATE_EXPLAIN", value_parser = clap::builder::FalseyValueParser::new())]
    pub explain: bool,
    /// Write the aggregate to this `.npy` file (1-D float32) instead of printing its values.
    #[arg(long, env = "BYZSGD_AGGREGATE_OUT")]
    pub out: Option<PathBuf>,
    /// The vectors: `.npy` (2-D float32/float64, one vector per row) or a JSON array of arrays;
    /// `-` reads standard input.
    #[arg(env = "BYZSGD_AGGREGATE_INPUT")]
    pub input: PathBuf,
}

impl AggregateArgs {
    fn config(&self) -> GarConfig {
        GarConfig {
            m: self.m,
            pre: self.pre.clone(),
            cc_tau: self.cc_tau,
            cc_iterations: self.cc_iterations,
            gm_nu: self.gm_nu,
            gm_iterations: self.gm_iterations,
            seed: self.seed,
            ..GarConfig::new(self.rule, self.f)
        }
    }
}

/// Runs `byzsgd-node aggregate`.
pub fn run(args: &AggregateArgs) -> anyhow::Result<()> {
    let source = args.input.display().to_string();
    let matrix = read_input(&args.input)?;
    let views: Vec<ArrayView1<'_, f32>> = matrix.rows().into_iter().collect();
    let aggregation = gar::aggregate(&args.config(), &views)
        .with_context(|| format!("cannot aggregate the vectors of {source}"))?;
    let (n, d) = matrix.dim();
    let report = Report {
        rule: args.rule,
        n,
        f: args.f,
        d,
        aggregate: args.out.is_none().then(|| aggregation.value.to_vec()),
        out: args.out.as_ref().map(|out| out.display().to_string()),
        selected: args.explain.then(|| aggregation.selected.clone()),
        excluded: args.explain.then(|| aggregation.excluded(n)),
    };
    if let Some(out) = &args.out {
        write_npy(out, &aggregation.value)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// What `aggregate` prints. Serialized from `f32` directly, so values print in their shortest
/// `f32` form (1.0125, not 1.0125000476837158).
#[derive(Debug, Serialize)]
struct Report {
    rule: Rule,
    n: usize,
    f: usize,
    d: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selected: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    excluded: Option<Vec<usize>>,
}

fn write_npy(path: &Path, value: &Array1<f32>) -> anyhow::Result<()> {
    let file = fs::File::create(path)
        .with_context(|| format!("cannot create the output file {}", path.display()))?;
    value
        .write_npy(BufWriter::new(file))
        .with_context(|| format!("cannot write the aggregate to {}", path.display()))
}

/// Why an input file could not be turned into `n ≥ 1` vectors of equal length `d ≥ 1`. Every
/// message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file (or stdin) could not be read.
    #[error("cannot read {source_name}")]
    Read {
        /// The input's name.
        source_name: String,
        /// The I/O error.
        #[source]
        error: io::Error,
    },
    /// A `.npy` file holding something other than a 2-D array.
    #[error("{source_name} holds a {found}-D array; expected a 2-D array with one vector per row")]
    NotTwoDimensional {
        /// The input's name.
        source_name: String,
        /// Its number of dimensions.
        found: usize,
    },
    /// A `.npy` file of a dtype other than float32/float64.
    #[error("{source_name} holds {dtype} values; expected float32 or float64 (<f4, <f8)")]
    UnsupportedDtype {
        /// The input's name.
        source_name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A malformed `.npy` file.
    #[error("{source_name} is not a valid .npy file: {reason}")]
    Npy {
        /// The input's name.
        source_name: String,
        /// What the reader reported.
        reason: String,
    },
    /// Neither `.npy` nor valid JSON.
    #[error(
        "{source_name} is neither a .npy file nor valid JSON (expected an array of arrays of numbers)"
    )]
    Json {
        /// The input's name.
        source_name: String,
        /// The parser's error.
        #[source]
        error: serde_json::Error,
    },
    /// JSON that is not an array of arrays.
    #[error("{source_name}: {what}; expected an array of arrays of numbers, one array per vector")]
    NotAMatrix {
        /// The input's name.
        source_name: String,
        /// What was found instead.
        what: String,
    },
    /// A JSON entry that is not a number.
    #[error(
        "{source_name}: row {row}, column {column} is {found}; expected a number or one of \
         \"NaN\", \"Infinity\", \"-Infinity\""
    )]
    NotANumber {
        /// The input's name.
        source_name: String,
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        column: usize,
        /// The entry, as JSON.
        found: String,
    },
    /// Rows of different lengths.
    #[error(
        "{source_name}: row {row} has {found} values but row 0 has {expected}; all vectors must have the same length"
    )]
    Ragged {
        /// The input's name.
        source_name: String,
        /// The first row whose length differs.
        row: usize,
        /// Length of row 0.
        expected: usize,
        /// Length of `row`.
        found: usize,
    },
    /// No vectors, or vectors of length 0.
    #[error(
        "{source_name} holds {n} vectors of length {d}; give at least one vector of length ≥ 1"
    )]
    Empty {
        /// The input's name.
        source_name: String,
        /// Number of vectors.
        n: usize,
        /// Their length.
        d: usize,
    },
}

/// Reads the input file (or stdin for `-`) as an `n × d` matrix, one vector per row.
pub fn read_input(path: &Path) -> Result<Array2<f32>, InputError> {
    let source_name = path.display().to_string();
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .map(|_| bytes)
            .map_err(|error| InputError::Read {
                source_name: "standard input".to_owned(),
                error,
            })?
    } else {
        fs::read(path).map_err(|error| InputError::Read {
            source_name: source_name.clone(),
            error,
        })?
    };
    parse_input(&bytes, &source_name)
}

/// Parses `.npy` (recognised by its magic bytes) or JSON content.
pub fn parse_input(bytes: &[u8], source_name: &str) -> Result<Array2<f32>, InputError> {
    let matrix = if bytes.starts_with(b"\x93NUMPY") {
        parse_npy(bytes, source_name)?
    } else {
        parse_json(bytes, source_name)?
    };
    let (n, d) = matrix.dim();
    if n == 0 || d == 0 {
        return Err(InputError::Empty {
            source_name: source_name.to_owned(),
            n,
            d,
        });
    }
    Ok(matrix)
}

fn parse_npy(bytes: &[u8], source_name: &str) -> Result<Array2<f32>, InputError> {
    let npy_error = |error: ReadNpyError| match error {
        ReadNpyError::WrongNdim(_, found) => InputError::NotTwoDimensional {
            source_name: source_name.to_owned(),
            found,
        },
        ReadNpyError::WrongDescriptor(dtype) => InputError::UnsupportedDtype {
            source_name: source_name.to_owned(),
            dtype: dtype.to_string(),
        },
        other => InputError::Npy {
            source_name: source_name.to_owned(),
            reason: other.to_string(),
        },
    };
    match Array2::<f32>::read_npy(bytes) {
        Ok(matrix) => Ok(matrix),
        // Not float32: try float64 before reporting the dtype.
        Err(ReadNpyError::WrongDescriptor(_)) => Array2::<f64>::read_npy(bytes)
            .map(|matrix| matrix.mapv(|x| x as f32))
            .map_err(npy_error),
        Err(error) => Err(npy_error(error)),
    }
}

fn parse_json(bytes: &[u8], source_name: &str) -> Result<Array2<f32>, InputError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| InputError::Json {
        source_name: source_name.to_owned(),
        error,
    })?;
    let not_a_matrix = |what: String| InputError::NotAMatrix {
        source_name: source_name.to_owned(),
        what,
    };
    let Value::Array(rows) = value else {
        return Err(not_a_matrix(format!("the top level is {}", kind(&value))));
    };
    let mut values = Vec::new();
    let mut d = 0;
    for (row, entry) in rows.iter().enumerate() {
        let Value::Array(entries) = entry else {
            return Err(not_a_matrix(format!("row {row} is {}", kind(entry))));
        };
        if row == 0 {
            d = entries.len();
        } else if entries.len() != d {
            return Err(InputError::Ragged {
                source_name: source_name.to_owned(),
                row,
                expected: d,
                found: entries.len(),
            });
        }
        for (column, entry) in entries.iter().enumerate() {
            values.push(number(entry).ok_or_else(|| InputError::NotANumber {
                source_name: source_name.to_owned(),
                row,
                column,
                found: entry.to_string(),
            })?);
        }
    }
    Array2::from_shape_vec((rows.len(), d), values).map_err(|error| not_a_matrix(error.to_string()))
}

/// A JSON number, or one of the strings standing for a non-finite value.
fn number(value: &Value) -> Option<f32> {
    match value {
        Value::Number(number) => number.as_f64().map(|x| x as f32),
        Value::String(text) => match text.as_str() {
            "NaN" | "nan" => Some(f32::NAN),
            "Infinity" | "inf" | "+inf" => Some(f32::INFINITY),
            "-Infinity" | "-inf" => Some(f32::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
// Parsed values must come back bit for bit, so exact float comparisons are the point.
#[allow(clippy::float_cmp)]
mod tests {
    use ndarray::{Array1, Array2, array};
    use ndarray_npy::WriteNpyExt;

    use super::{InputError, parse_input};

    fn npy_bytes<T: WriteNpyExt>(array: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        array.write_npy(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn float32_npy_is_read_row_by_row() {
        let matrix = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        assert_eq!(parse_input(&npy_bytes(&matrix), "x.npy").unwrap(), matrix);
    }

    #[test]
    fn float64_npy_is_rounded_to_float32() {
        let matrix = array![[0.1f64, -2.5], [1e300, f64::NAN]];
        let parsed = parse_input(&npy_bytes(&matrix), "x.npy").unwrap();
        assert_eq!(parsed[[0, 0]], 0.1f32);
        assert_eq!(parsed[[0, 1]], -2.5);
        assert_eq!(parsed[[1, 0]], f32::INFINITY);
        assert!(parsed[[1, 1]].is_nan());
    }

    #[test]
    fn one_dimensional_npy_is_rejected_with_its_rank() {
        let error = parse_input(&npy_bytes(&Array1::<f32>::zeros(4)), "v.npy").unwrap_err();
        assert!(
            matches!(error, InputError::NotTwoDimensional { found: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("v.npy"));
    }

    #[test]
    fn integer_npy_is_rejected_with_its_dtype() {
        let error = parse_input(&npy_bytes(&array![[1i64, 2], [3, 4]]), "i.npy").unwrap_err();
        assert!(
            matches!(error, InputError::UnsupportedDtype { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("i.npy"), "{error}");
    }

    #[test]
    fn truncated_npy_is_rejected() {
        let bytes = npy_bytes(&array![[1.0f32, 2.0], [3.0, 4.0]]);
        let error = parse_input(&bytes[..bytes.len() - 3], "t.npy").unwrap_err();
        assert!(matches!(error, InputError::Npy { .. }), "{error}");
    }

    #[test]
    fn empty_npy_is_rejected() {
        let error = parse_input(&npy_bytes(&Array2::<f32>::zeros((0, 3))), "e.npy").unwrap_err();
        assert!(
            matches!(error, InputError::Empty { n: 0, d: 3, .. }),
            "{error}"
        );
    }

    #[test]
    fn json_rows_and_non_finite_spellings_are_read() {
        let text = br#"[[1, 2.5, "NaN"], [-3, "Infinity", "-inf"]]"#;
        let parsed = parse_input(text, "x.json").unwrap();
        assert_eq!(parsed.dim(), (2, 3));
        assert_eq!(parsed[[0, 1]], 2.5);
        assert!(parsed[[0, 2]].is_nan());
        assert_eq!(parsed[[1, 1]], f32::INFINITY);
        assert_eq!(parsed[[1, 2]], f32::NEG_INFINITY);
    }

    #[test]
    fn ragged_json_names_the_row_and_both_lengths() {
        let error = parse_input(b"[[1, 2], [3, 4], [5]]", "r.json").unwrap_err();
        assert!(
            matches!(
                error,
                InputError::Ragged {
                    row: 2,
                    expected: 2,
                    found: 1,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("r.json"));
    }

    #[test]
    fn json_entries_that_are_not_numbers_are_located() {
        let error = parse_input(b"[[1, 2], [3, true]]", "b.json").unwrap_err();
        assert!(
            matches!(
                error,
                InputError::NotANumber {
                    row: 1,
                    column: 1,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn malformed_and_non_matrix_json_are_rejected() {
        let error = parse_input(b"[[1, 2],", "m.json").unwrap_err();
        assert!(matches!(error, InputError::Json { .. }), "{error}");
        let error = parse_input(b"[1, 2]", "v.json").unwrap_err();
        assert!(matches!(error, InputError::NotAMatrix { .. }), "{error}");
        let error = parse_input(b"{\"a\": 1}", "o.json").unwrap_err();
        assert!(matches!(error, InputError::NotAMatrix { .. }), "{error}");
    }

    #[test]
    fn empty_json_is_rejected() {
        let error = parse_input(b"[]", "e.json").unwrap_err();
        assert!(matches!(error, InputError::Empty { n: 0, .. }), "{error}");
        let error = parse_input(b"[[], []]", "e.json").unwrap_err();
        assert!(
            matches!(error, InputError::Empty { n: 2, d: 0, .. }),
            "{error}"
        );
    }
}
