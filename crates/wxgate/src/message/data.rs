//! Template keywords as the API takes them: `{"thing1":"value"}`, kept as a short list.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Template keywords as the API takes them, `{"thing1":"value"}`, in input order; WeChat's
/// `{"value":…}` wrapping is added when the body is built. A list, not a map: a campaign holds a
/// million of these, and a map node costs half a kilobyte. Names are unique (a repeated one is
/// a parse error), and there are at most [`MAX_KEYWORDS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data(Vec<(String, String)>);

/// Keywords one `data` object may hold: wxgate's own bound, far above any real template.
pub const MAX_KEYWORDS: usize = 32;

impl Data {
    pub fn new() -> Self {
        Data(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Adds a keyword; `false` (and nothing changes) if the name is taken or the list is full.
    pub fn push(&mut self, name: String, value: String) -> bool {
        let ok = self.0.len() < MAX_KEYWORDS && self.get(&name).is_none();
        if ok {
            self.0.push((name, value));
        }
        ok
    }

    /// The entries, for checking (and cutting) values in place.
    pub(crate) fn entries_mut(&mut self) -> &mut [(String, String)] {
        &mut self.0
    }
}

/// Keeps the first of repeated names and stops at [`MAX_KEYWORDS`].
impl FromIterator<(String, String)> for Data {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut data = Data::new();
        for (name, value) in iter {
            data.push(name, value);
        }
        data
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of keyword names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut data = Data(Vec::with_capacity(map.size_hint().unwrap_or(4).min(8)));
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    if data.get(&name).is_some() {
                        return Err(de::Error::custom(format!("keyword `{name}` appears twice")));
                    }
                    if !data.push(name, value) {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_KEYWORDS} keywords; templates have far fewer"
                        )));
                    }
                }
                Ok(data)
            }
        }
        d.deserialize_map(DataVisitor)
    }
}
