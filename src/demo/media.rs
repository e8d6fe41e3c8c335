//! Small base64-encoded media used by tools, resources and prompts.

/// A 1x1 red PNG.
pub(crate) const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";

/// A 4x4 steel-blue PNG (the `demo://logo` resource).
pub(crate) const LOGO_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR42mMwTpsJRwzEcQDrIxMhKmJgcwAAAABJRU5ErkJggg==";

/// A WAV file: 16 samples of 8-bit mono silence at 8 kHz.
pub(crate) const SILENT_WAV: &str = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YRAAAACAgICAgICAgICAgICAgICA";
