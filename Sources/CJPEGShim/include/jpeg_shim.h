#ifndef DISTILLCTL_JPEG_SHIM_H
#define DISTILLCTL_JPEG_SHIM_H
#include <stddef.h>
#include <stdint.h>

/// Decodes a JPEG held in memory into 8-bit pixels with `channels` (1 or 3) per pixel.
/// On success returns 0, sets *out (malloc'd, caller frees), *width, *height.
/// On failure returns -1 and writes libjpeg's message into err (never exits the process).
/// Note: for a colour JPEG, channels = 1 is libjpeg's grey output (the Y plane), which is *not*
/// PIL's convert("L") of the RGB pixels; decode natively and convert when matching PIL.
int dctl_jpeg_decode(const uint8_t *data, size_t size, int channels,
                     uint8_t **out, int *width, int *height, char *err, size_t err_size);

/// Decodes a JPEG in the colour space it is stored in, as PIL does: 1 component -> grey,
/// 3 -> RGB, 4 -> CMYK (libjpeg's CMYK values as stored; Adobe files store them inverted).
/// Sets *channels to 1, 3 or 4. Same ownership and error rules as dctl_jpeg_decode.
/// min_width, min_height > 0: a photo at least twice that size in both directions is decoded with
/// libjpeg-turbo's DCT scaling 1/2, 1/4 or 1/8, chosen as PIL's draft() chooses it (the output
/// still covers the target); 0, 0: full size, as PIL's plain decode.
int dctl_jpeg_decode_native(const uint8_t *data, size_t size, int min_width, int min_height,
                            uint8_t **out, int *width, int *height, int *channels,
                            char *err, size_t err_size);

/// A JPEG whose header is read, to decode with dctl_jpeg_decode_picked (or close).
typedef struct dctl_jpeg_reader dctl_jpeg_reader;

/// Reads the header of a JPEG held in memory (which must outlive the reader): the size it decodes
/// to and the channels of the colour space it is stored in, as dctl_jpeg_decode_native decodes it
/// for min_width x min_height (1, 3 or 4 channels; the DCT scaling it chooses, none where either
/// is 0). NULL on failure, with libjpeg's message in err.
dctl_jpeg_reader *dctl_jpeg_open(const uint8_t *data, size_t size, int min_width, int min_height,
                                 int *width, int *height, int *channels, char *err, size_t err_size);

/// Frees a reader not decoded.
void dctl_jpeg_close(dctl_jpeg_reader *reader);

/// Decodes at the reader's size, as dctl_jpeg_decode_native decodes it, keeping only the pixels
/// a nearest resize picks: output pixel (r, x) is source pixel (rows[r], columns[x]), 0 where
/// either is -1 (past the source). `rows` is non-decreasing but for its -1s; `out` holds
/// out_height * out_width * channels bytes. Every scanline is decoded, so the file is refused
/// exactly when the full decode refuses it. Frees the reader; 0 on success, -1 with err set.
int dctl_jpeg_decode_picked(dctl_jpeg_reader *reader, const int *rows, int out_height, const int *columns, int out_width,
                            uint8_t *out, char *err, size_t err_size);

/// Encodes 8-bit pixels (channels 1 or 3) as a baseline JPEG of the given quality.
/// On success returns 0 and sets *out (malloc'd by libjpeg, caller frees) and *out_size.
/// On failure returns -1 with *out NULL (nothing to free).
int dctl_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                     uint8_t **out, unsigned long *out_size, char *err, size_t err_size);
#endif
