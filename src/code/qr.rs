//! QR form of a code: alphanumeric mode at error correction M, rendered as PNG, SVG or terminal art, and read back from images.

use std::io::Cursor;

use image::{GrayImage, ImageFormat, ImageReader, Luma};
use qrcode::bits::Bits;
use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode, Version};

/// Largest QR version the format is designed to fit (49×49 modules at error correction M).
pub const MAX_DESIGN_VERSION: i16 = 8;
/// Quiet zone around the symbol, in modules, as ISO/IEC 18004 requires.
const QUIET_ZONE: u32 = 4;
/// Pixels per module in PNG output: about 3 cm wide at 300 dpi, sharp on any printer or phone.
pub const PNG_MODULE_PIXELS: u32 = 8;
/// Largest image file accepted for reading.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest image width or height accepted for reading, checked before decoding pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Why a code could not be turned into a QR symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrEncodeError {
    /// A character is outside the QR alphanumeric set (codes never contain one).
    #[error("text has characters outside the QR alphanumeric set")]
    NotAlphanumeric,
    /// The text does not fit even the largest symbol.
    #[error("text is too long for any QR code")]
    TooLong,
}

/// Encodes `text` in a single alphanumeric segment at error correction M, in the smallest
/// version that holds it.
pub fn encode(text: &str) -> Result<QrCode, QrEncodeError> {
    if !text.bytes().all(is_qr_alphanumeric) {
        return Err(QrEncodeError::NotAlphanumeric);
    }
    for version in 1..=40 {
        let mut bits = Bits::new(Version::Normal(version));
        if bits.push_alphanumeric_data(text.as_bytes()).is_err() || bits.push_terminator(EcLevel::M).is_err() {
            continue;
        }
        return QrCode::with_bits(bits, EcLevel::M).map_err(|_| QrEncodeError::TooLong);
    }
    Err(QrEncodeError::TooLong)
}

/// The symbol's version number (1..=40).
pub fn version_number(code: &QrCode) -> i16 {
    match code.version() {
        Version::Normal(number) | Version::Micro(number) => number,
    }
}

fn is_qr_alphanumeric(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'A'..=b'Z' | b' ' | b'$' | b'%' | b'*' | b'+' | b'-' | b'.' | b'/' | b':')
}

/// A black-on-white PNG with a 4-module quiet zone, [`PNG_MODULE_PIXELS`] pixels per module.
pub fn to_png(code: &QrCode) -> Vec<u8> {
    let modules = code.width() as u32;
    let side = (modules + 2 * QUIET_ZONE) * PNG_MODULE_PIXELS;
    let colors = code.to_colors();
    let image = GrayImage::from_fn(side, side, |x, y| {
        let module = |pixel: u32| (pixel / PNG_MODULE_PIXELS).checked_sub(QUIET_ZONE).filter(|m| *m < modules);
        let dark = match (module(x), module(y)) {
            (Some(mx), Some(my)) => colors[(my * modules + mx) as usize] == qrcode::Color::Dark,
            _ => false,
        };
        Luma([if dark { 0 } else { 255 }])
    });
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).expect("encoding PNG into memory cannot fail");
    png
}

/// A standalone SVG document, one unit per module, with the quiet zone.
pub fn to_svg(code: &QrCode) -> String {
    code.render::<svg::Color<'_>>().quiet_zone(true).module_dimensions(1, 1).build()
}

/// Text art for a terminal: two modules per character cell (dark text on a light background
/// is inverted by many terminals, so the art draws light modules and leaves dark ones blank).
pub fn to_terminal(code: &QrCode) -> String {
    code.render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build()
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QrReadError {
    /// The file is larger than [`MAX_IMAGE_BYTES`].
    #[error("image of {0} bytes exceeds the limit of {MAX_IMAGE_BYTES}")]
    TooLarge(usize),
    /// The file is not a PNG or JPEG image, or its pixels exceed [`MAX_IMAGE_SIDE`].
    #[error("not a readable PNG or JPEG image within {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels: {0}")]
    Image(String),
    /// No QR symbol could be found and decoded in the image.
    #[error("no readable QR code in the image")]
    NoCode,
}

/// Every QR symbol's text found in a PNG or JPEG image, top-left first.
pub fn read_image(bytes: &[u8]) -> Result<Vec<String>, QrReadError> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(QrReadError::TooLarge(bytes.len()));
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| QrReadError::Image(e.to_string()))?;
    if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(QrReadError::Image("format is neither PNG nor JPEG".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    let gray = reader.decode().map_err(|e| QrReadError::Image(e.to_string()))?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(gray);
    let texts: Vec<String> =
        prepared.detect_grids().into_iter().filter_map(|grid| grid.decode().ok().map(|(_, text)| text)).collect();
    if texts.is_empty() { Err(QrReadError::NoCode) } else { Ok(texts) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_read_back_to_the_same_text() {
        let text = "LM1:ABC DEF$%*+-./:0123456789";
        let code = encode(text).unwrap();
        assert_eq!(read_image(&to_png(&code)).unwrap(), vec![text.to_string()]);
    }

    #[test]
    fn a_jpeg_photo_of_the_code_is_read_too() {
        let text = "LM1:JPEG IS LOSSY BUT QR SURVIVES IT 0123456789";
        let png = to_png(&encode(text).unwrap());
        let image = image::load_from_memory(&png).unwrap();
        let mut jpeg = Vec::new();
        image.to_luma8().write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG file");
        assert_eq!(read_image(&jpeg).unwrap(), vec![text.to_string()]);
    }

    #[test]
    fn rejects_lowercase_and_reports_images_without_codes() {
        assert_eq!(encode("lm1:abc").err(), Some(QrEncodeError::NotAlphanumeric));
        let blank = GrayImage::from_pixel(64, 64, Luma([255]));
        let mut png = Vec::new();
        blank.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        assert!(matches!(read_image(&png), Err(QrReadError::NoCode)));
        assert!(matches!(read_image(b"GIF89a not an image"), Err(QrReadError::Image(_))));
    }

    #[test]
    fn svg_and_terminal_art_have_the_symbol_size() {
        let code = encode("LM1:HELLO").unwrap();
        let modules = code.width() + 2 * QUIET_ZONE as usize;
        assert!(to_svg(&code).contains(&format!("viewBox=\"0 0 {modules} {modules}\"")));
        assert_eq!(to_terminal(&code).lines().count(), modules.div_ceil(2));
    }
}
