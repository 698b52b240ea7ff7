//! A macro for the closed string enums of the domain (statuses, types, priorities).
//!
//! Every such enum has one canonical snake_case spelling, used in JSON, in the database and in
//! error messages; `as_str`, `FromStr`, `Display` and serde all go through the same table so they
//! cannot drift apart.

use std::fmt;

/// A string that names no variant of a closed enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`; expected one of: {expected}")]
pub struct ParseEnumError {
    /// What was being parsed, e.g. `status`.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted spellings, comma-separated.
    pub expected: String,
}

impl ParseEnumError {
    pub(crate) fn new(kind: &'static str, value: &str, all: &[&str]) -> Self {
        Self {
            kind,
            value: value.to_owned(),
            expected: all.join(", "),
        }
    }
}

/// Defines a fieldless enum with a canonical string per variant.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        $vis enum $name {
            // The schema names each variant by its canonical string, so the document lists the
            // values the wire carries (`spec_task.created`, `none`), whatever the variant's name.
            $( $(#[$vmeta])* #[cfg_attr(feature = "openapi", schema(rename = $text))] $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical spelling (JSON, database, messages).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The canonical spellings of every variant.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::enums::ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::enums::ParseEnumError::new($kind, s, &[$($text),+])),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_enum;

/// Formats a list of enum values as `a, b, c` for messages.
pub fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
