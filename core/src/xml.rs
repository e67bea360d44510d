//! A small, strict XML reader for the files of `docs/protocol.md`: it builds an element tree and
//! refuses what these formats never contain (DOCTYPE, entity definitions, unknown entities).

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

/// Deeper nesting than any Smart Licensing file has; a guard against hostile input.
const MAX_DEPTH: usize = 32;
/// More elements than any real document: a device file holds one `<RUMReport>` per report and a
/// NETCONF hello one `<capability>` per module (a few thousand). Each element costs about 100
/// bytes of tree however short its tags, so a wide document of `<a/>` would otherwise grow a
/// tree twenty times its size.
pub const MAX_ELEMENTS: usize = 100_000;
/// Most character data (text, CDATA and resolved references, summed over the whole document)
/// one document may produce: a device's RUM file of tens of thousands of reports fits.
pub const MAX_TEXT_BYTES: usize = 64 * 1024 * 1024;

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {position}: {message}")]
    Syntax {
        /// Byte offset where the reader stopped.
        position: u64,
        /// The reader's complaint.
        message: String,
    },
    /// DOCTYPE declarations (and with them entity definitions) are refused outright.
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    /// A reference to an entity other than the five predefined ones.
    #[error("unknown entity reference &{0};")]
    UnknownEntity(String),
    /// Nesting deeper than any real file.
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More elements than any real file ([`MAX_ELEMENTS`]).
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// More character data than any real file ([`MAX_TEXT_BYTES`]).
    #[error("more than {0} bytes of text")]
    TooMuchText(usize),
    /// Well-formed, but not the expected document.
    #[error("{0}")]
    Structure(String),
}

/// An element with its decoded text (text and CDATA, concatenated) and child elements.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// All character data directly inside this element, entities resolved, untrimmed.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses a whole document and returns its root element.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    parse_within(
        input,
        Budget {
            max_elements: MAX_ELEMENTS,
            max_text_bytes: MAX_TEXT_BYTES,
            ..Budget::default()
        },
    )
}

fn parse_within(input: &str, mut budget: Budget) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(input);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            position,
            message: e.to_string(),
        })?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                budget.element()?;
                if root.is_some() && stack.is_empty() {
                    return Err(XmlError::Structure("more than one root element".into()));
                }
                stack.push(Element {
                    name: local_name(start.local_name().as_ref()),
                    ..Default::default()
                });
            }
            Event::Empty(start) => {
                budget.element()?;
                let element = Element {
                    name: local_name(start.local_name().as_ref()),
                    ..Default::default()
                };
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| XmlError::Syntax {
                    position,
                    message: "closing tag without an opening tag".into(),
                })?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::Text(text) => {
                budget.text(text.len())?;
                append_text(&mut stack, &text.xml10_content())?;
            }
            Event::CData(data) => {
                budget.text(data.len())?;
                append_text(&mut stack, &data.xml10_content())?;
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                budget.text(resolved.len())?;
                append_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            // The XML declaration, comments and processing instructions carry nothing we read.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError::Syntax {
            position: reader.buffer_position(),
            message: format!("element <{}> is not closed", open.name),
        });
    }
    root.ok_or_else(|| XmlError::Structure("the document has no root element".into()))
}

/// What a document has produced so far, checked before each element or text is kept.
#[derive(Default)]
struct Budget {
    max_elements: usize,
    max_text_bytes: usize,
    elements: usize,
    text_bytes: usize,
}

impl Budget {
    fn element(&mut self) -> Result<(), XmlError> {
        self.elements += 1;
        if self.elements > self.max_elements {
            return Err(XmlError::TooManyElements(self.max_elements));
        }
        Ok(())
    }

    /// Counts raw bytes: decoding (line endings, references) never makes text longer.
    fn text(&mut self, bytes: usize) -> Result<(), XmlError> {
        self.text_bytes = self.text_bytes.saturating_add(bytes);
        if self.text_bytes > self.max_text_bytes {
            return Err(XmlError::TooMuchText(self.max_text_bytes));
        }
        Ok(())
    }
}

fn local_name(raw: &str) -> String {
    raw.to_owned()
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err(XmlError::Structure("more than one root element".into())),
    }
    Ok(())
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(element) => element.text.push_str(text),
        // Whitespace between the prolog and the root is fine; anything else is not XML.
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Structure("text outside the root element".into())),
    }
    Ok(())
}

fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, XmlError> {
    if let Ok(Some(ch)) = reference.resolve_char_ref() {
        return Ok(ch.to_string());
    }
    let name = reference.xml10_content();
    quick_xml::escape::resolve_xml_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| XmlError::UnknownEntity(name.into_owned()))
}

/// Escapes text for use as element content.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::partial_escape(text)
}

/// Wraps text in CDATA sections, splitting it where it contains `]]>` so any text round-trips.
pub fn cdata(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 12);
    out.push_str("<![CDATA[");
    out.push_str(&text.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_cdata_and_entities() {
        let root =
            parse("<?xml version=\"1.0\"?><a>x &amp; &#65;<b><![CDATA[<raw>]]></b></a>").unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.text, "x & A");
        assert_eq!(root.child("b").unwrap().text, "<raw>");
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let doctype = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"boom\">]><a>&x;</a>";
        assert_eq!(parse(doctype), Err(XmlError::Doctype));
        assert_eq!(
            parse("<a>&x;</a>"),
            Err(XmlError::UnknownEntity("x".into()))
        );
    }

    #[test]
    fn refuses_broken_documents() {
        assert!(matches!(parse("<a><b></a>"), Err(XmlError::Syntax { .. })));
        assert!(matches!(parse("<a>"), Err(XmlError::Syntax { .. })));
        assert!(matches!(parse("<a/><b/>"), Err(XmlError::Structure(_))));
        assert!(matches!(parse(""), Err(XmlError::Structure(_))));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
    }

    #[test]
    fn a_wide_document_is_refused_at_the_element_cap() {
        // Four bytes an element: without the cap this grows a tree about 25 times the input.
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert_eq!(parse(&wide), Err(XmlError::TooManyElements(MAX_ELEMENTS)));
        let just = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS - 1));
        assert_eq!(parse(&just).unwrap().children.len(), MAX_ELEMENTS - 1);
        let err = parse_within(
            "<a><b></b><c/><d/></a>",
            Budget {
                max_elements: 3,
                max_text_bytes: 100,
                ..Budget::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "more than 3 elements");
    }

    #[test]
    fn text_is_counted_across_the_document() {
        let limits = || Budget {
            max_elements: 100,
            max_text_bytes: 10,
            ..Budget::default()
        };
        // Text, CDATA and references add up, wherever they sit.
        assert!(parse_within("<a>12345<b>&amp;&#65;</b><![CDATA[678]]></a>", limits()).is_ok());
        let err = parse_within("<a>12345<b>&amp;&#65;</b><![CDATA[6789]]></a>", limits());
        assert_eq!(err, Err(XmlError::TooMuchText(10)));
        assert_eq!(err.unwrap_err().to_string(), "more than 10 bytes of text");
        assert!(matches!(
            parse_within(&format!("<a>{}</a>", "x".repeat(11)), limits()),
            Err(XmlError::TooMuchText(10))
        ));
    }

    #[test]
    fn cdata_round_trips_terminator() {
        let text = "a]]>b";
        let doc = format!("<r>{}</r>", cdata(text));
        assert_eq!(parse(&doc).unwrap().text, text);
    }
}
