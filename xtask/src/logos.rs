//! The widget's logos, drawn by code so they can be redrawn and reviewed: `cargo xtask logos` writes `images/*.png`.
//!
//! One design in every size: a blue-to-cyan rounded tile with a white handset and sound waves; the wide
//! formats add a voice waveform. The glyph is designed on a 100×100 grid and scaled.

use std::f32::consts::PI;
use std::path::Path;

use anyhow::{Context, Result};
use tiny_skia::{
    Color, FillRule, GradientStop, LineCap, LinearGradient, Paint, Path as SkPath, PathBuilder, Pixmap, Point,
    RadialGradient, Shader, SpreadMode, Stroke, Transform,
};

use crate::archive_rules::LOGOS;

const DEEP_BLUE: (u8, u8, u8) = (0x1d, 0x4e, 0xd8);
const CYAN: (u8, u8, u8) = (0x06, 0xb6, 0xd4);

/// `cargo xtask logos`: redraws every logo into `<root>/images/`.
pub fn command(root: &Path) -> Result<()> {
    let images = root.join("images");
    std::fs::create_dir_all(&images).with_context(|| format!("creating {}", images.display()))?;
    for (name, png) in draw_all()? {
        let path = images.join(name);
        std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), png.len());
    }
    Ok(())
}

/// Every logo Kommo needs, as PNG bytes, by file name.
pub fn draw_all() -> Result<Vec<(&'static str, Vec<u8>)>> {
    LOGOS
        .iter()
        .map(|&(name, width, height)| {
            let pixmap = draw(width, height).with_context(|| format!("drawing {name}"))?;
            Ok((name, pixmap.encode_png().with_context(|| format!("encoding {name}"))?))
        })
        .collect()
}

/// Chooses the layout from the aspect ratio: square-ish tiles get the glyph alone, wide ones add a waveform.
fn draw(width: u32, height: u32) -> Option<Pixmap> {
    let mut pixmap = Pixmap::new(width, height)?;
    let (w, h) = (width as f32, height as f32);
    let radius = w.min(h) * 0.22;
    tile(&mut pixmap, w, h, radius)?;
    if w / h > 2.0 {
        // Wide banner: glyph on the left, waveform filling the rest.
        let glyph_size = h * 0.78;
        let left = (h - glyph_size) / 2.0 + w * 0.02;
        halo(&mut pixmap, left + glyph_size / 2.0, h / 2.0, glyph_size * 0.62)?;
        glyph(&mut pixmap, left, (h - glyph_size) / 2.0, glyph_size)?;
        let wave_left = left + glyph_size + h * 0.18;
        waveform(&mut pixmap, wave_left, w - h * 0.3, h / 2.0, h * 0.62)?;
    } else if w / h > 1.2 {
        // Landscape card: glyph left of centre, a short waveform to its right.
        let glyph_size = h * 0.62;
        let left = w * 0.1;
        halo(&mut pixmap, left + glyph_size / 2.0, h / 2.0, glyph_size * 0.72)?;
        glyph(&mut pixmap, left, (h - glyph_size) / 2.0, glyph_size)?;
        waveform(&mut pixmap, left + glyph_size + w * 0.06, w * 0.9, h / 2.0, h * 0.5)?;
    } else {
        let glyph_size = w * 0.66;
        glyph(&mut pixmap, (w - glyph_size) / 2.0, (h - glyph_size) / 2.0, glyph_size)?;
    }
    Some(pixmap)
}

fn color((r, g, b): (u8, u8, u8), alpha: f32) -> Color {
    Color::from_rgba8(r, g, b, (alpha * 255.0).round() as u8)
}

fn white(alpha: f32) -> Paint<'static> {
    solid(color((255, 255, 255), alpha))
}

fn solid(color: Color) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(color);
    paint.anti_alias = true;
    paint
}

fn shaded(shader: Shader<'static>) -> Paint<'static> {
    Paint { shader, anti_alias: true, ..Paint::default() }
}

/// The rounded background: a diagonal blue→cyan gradient with a soft light from the top-left.
fn tile(pixmap: &mut Pixmap, w: f32, h: f32, radius: f32) -> Option<()> {
    let shape = rounded_rect(0.0, 0.0, w, h, radius)?;
    let gradient = LinearGradient::new(
        Point::from_xy(0.0, 0.0),
        Point::from_xy(w, h),
        vec![GradientStop::new(0.0, color(DEEP_BLUE, 1.0)), GradientStop::new(1.0, color(CYAN, 1.0))],
        SpreadMode::Pad,
        Transform::identity(),
    )?;
    pixmap.fill_path(&shape, &shaded(gradient), FillRule::Winding, Transform::identity(), None);
    let light = RadialGradient::new(
        Point::from_xy(w * 0.2, 0.0),
        0.0,
        Point::from_xy(w * 0.2, 0.0),
        w.max(h) * 0.9,
        vec![GradientStop::new(0.0, color((255, 255, 255), 0.22)), GradientStop::new(1.0, color((255, 255, 255), 0.0))],
        SpreadMode::Pad,
        Transform::identity(),
    )?;
    pixmap.fill_path(&shape, &shaded(light), FillRule::Winding, Transform::identity(), None);
    Some(())
}

/// Two faint rings behind the glyph on the wide layouts.
fn halo(pixmap: &mut Pixmap, cx: f32, cy: f32, radius: f32) -> Option<()> {
    pixmap.fill_path(
        &PathBuilder::from_circle(cx, cy, radius)?,
        &white(0.10),
        FillRule::Winding,
        Transform::identity(),
        None,
    );
    pixmap.fill_path(
        &PathBuilder::from_circle(cx, cy, radius * 0.8)?,
        &white(0.08),
        FillRule::Winding,
        Transform::identity(),
        None,
    );
    Some(())
}

/// The handset and its sound waves in white, with a soft shadow, in the square at (`left`, `top`) of side `size`.
fn glyph(pixmap: &mut Pixmap, left: f32, top: f32, size: f32) -> Option<()> {
    let scale = size / 100.0;
    let at = Transform::from_scale(scale, scale).post_translate(left, top);
    let shadow_at = at.post_translate(0.0, size * 0.025);
    let handset = handset()?;
    let waves = waves()?;
    let wave_stroke = Stroke { width: 7.0, line_cap: LineCap::Round, ..Stroke::default() };
    let shadow = solid(Color::from_rgba8(0x0b, 0x2a, 0x6b, 64));
    pixmap.fill_path(&handset, &shadow, FillRule::Winding, shadow_at, None);
    pixmap.stroke_path(&waves, &shadow, &wave_stroke, shadow_at, None);
    pixmap.fill_path(&handset, &white(1.0), FillRule::Winding, at, None);
    pixmap.stroke_path(&waves, &white(1.0), &wave_stroke, at, None);
    Some(())
}

/// A classic handset on the 100×100 grid: a curved grip from the earpiece (top left) to the mouthpiece (bottom right),
/// both cups turned inwards.
fn handset() -> Option<SkPath> {
    let mut grip = PathBuilder::new();
    grip.move_to(24.0, 26.0);
    grip.cubic_to(22.0, 50.0, 48.0, 77.0, 72.0, 75.0);
    let grip = grip.finish()?.stroke(&Stroke { width: 15.0, line_cap: LineCap::Round, ..Stroke::default() }, 1.0)?;
    let mut shape = PathBuilder::new();
    shape.push_path(&grip);
    shape.push_path(&rotated_rounded_rect(31.0, 21.0, 30.0, 17.0, 8.0, -38.0)?);
    shape.push_path(&rotated_rounded_rect(77.0, 67.0, 30.0, 17.0, 8.0, -52.0)?);
    shape.finish()
}

/// Two arcs radiating from the handset towards the top right.
fn waves() -> Option<SkPath> {
    let mut waves = PathBuilder::new();
    for radius in [15.0, 28.0] {
        arc(&mut waves, 54.0, 44.0, radius, -80.0, -10.0);
    }
    waves.finish()
}

/// A voice waveform: rounded bars between `left` and `right`, centred on `cy`, at most `height` tall.
fn waveform(pixmap: &mut Pixmap, left: f32, right: f32, cy: f32, height: f32) -> Option<()> {
    const LEVELS: [f32; 13] = [0.22, 0.42, 0.7, 0.5, 0.9, 1.0, 0.64, 0.82, 0.46, 0.72, 0.38, 0.56, 0.26];
    let pitch = (right - left) / LEVELS.len() as f32;
    let bar = pitch * 0.52;
    for (i, level) in LEVELS.iter().enumerate() {
        let bar_height = (height * level).max(bar);
        let x = left + pitch * i as f32 + (pitch - bar) / 2.0;
        let alpha = if i % 2 == 0 { 0.95 } else { 0.7 };
        let shape = rounded_rect(x, cy - bar_height / 2.0, bar, bar_height, bar / 2.0)?;
        pixmap.fill_path(&shape, &white(alpha), FillRule::Winding, Transform::identity(), None);
    }
    Some(())
}

fn rounded_rect(x: f32, y: f32, w: f32, h: f32, r: f32) -> Option<SkPath> {
    let mut builder = PathBuilder::new();
    push_rounded_rect(&mut builder, x, y, w, h, r);
    builder.finish()
}

/// A rounded rectangle of size `w`×`h` centred on (`cx`, `cy`), turned by `degrees`.
fn rotated_rounded_rect(cx: f32, cy: f32, w: f32, h: f32, r: f32, degrees: f32) -> Option<SkPath> {
    let shape = rounded_rect(-w / 2.0, -h / 2.0, w, h, r)?;
    shape.transform(Transform::from_rotate(degrees).post_translate(cx, cy))
}

/// Corners are cubic quarter circles (handle length 0.5523 r).
fn push_rounded_rect(builder: &mut PathBuilder, x: f32, y: f32, w: f32, h: f32, r: f32) {
    let r = r.min(w / 2.0).min(h / 2.0);
    let k = r * (1.0 - 0.552_284_8);
    let (right, bottom) = (x + w, y + h);
    builder.move_to(x + r, y);
    builder.line_to(right - r, y);
    builder.cubic_to(right - k, y, right, y + k, right, y + r);
    builder.line_to(right, bottom - r);
    builder.cubic_to(right, bottom - k, right - k, bottom, right - r, bottom);
    builder.line_to(x + r, bottom);
    builder.cubic_to(x + k, bottom, x, bottom - k, x, bottom - r);
    builder.line_to(x, y + r);
    builder.cubic_to(x, y + k, x + k, y, x + r, y);
    builder.close();
}

/// A circular arc from `start` to `end` degrees (clockwise on screen, 0° pointing right), as cubic segments.
fn arc(builder: &mut PathBuilder, cx: f32, cy: f32, r: f32, start: f32, end: f32) {
    let segments = ((end - start).abs() / 90.0).ceil().max(1.0) as usize;
    let step = (end - start).to_radians() / segments as f32;
    let handle = 4.0 / 3.0 * (step / 4.0).tan() * r;
    let point = |angle: f32| (cx + r * angle.cos(), cy + r * angle.sin());
    let mut angle = start.to_radians();
    let (x, y) = point(angle);
    builder.move_to(x, y);
    for _ in 0..segments {
        let next = angle + step;
        let (x0, y0) = point(angle);
        let (x1, y1) = point(next);
        builder.cubic_to(
            x0 - handle * angle.sin(),
            y0 + handle * angle.cos(),
            x1 + handle * next.sin(),
            y1 - handle * next.cos(),
            x1,
            y1,
        );
        angle = next;
    }
    debug_assert!((angle - end.to_radians()).abs() < PI / 180.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace;

    #[test]
    fn the_committed_logos_are_what_the_generator_draws() {
        let images = workspace::root().join("images");
        for (name, png) in draw_all().unwrap() {
            let committed = std::fs::read(images.join(name))
                .unwrap_or_else(|e| panic!("images/{name}: {e}; run `cargo xtask logos`"));
            let drawn = Pixmap::decode_png(&png).unwrap();
            let committed = Pixmap::decode_png(&committed).unwrap();
            assert!(
                (drawn.width(), drawn.height()) == (committed.width(), committed.height())
                    && drawn.data() == committed.data(),
                "images/{name} differs from what `cargo xtask logos` draws: run it and commit the result"
            );
        }
    }

    #[test]
    fn every_logo_has_its_kommo_size_and_is_not_blank() {
        for ((name, png), (_, width, height)) in draw_all().unwrap().into_iter().zip(LOGOS) {
            assert_eq!(crate::archive_rules::png_size(&png), Some((width, height)), "{name}");
            let pixmap = Pixmap::decode_png(&png).unwrap();
            let pixels = pixmap.pixels();
            let white = pixels
                .iter()
                .filter(|p| p.red() > 240 && p.green() > 240 && p.blue() > 240 && p.alpha() == 255)
                .count();
            let opaque = pixels.iter().filter(|p| p.alpha() == 255).count();
            assert!(white * 20 > pixels.len(), "{name}: the white glyph covers too little");
            assert!(opaque * 10 > pixels.len() * 8, "{name}: the tile covers too little");
        }
    }
}
