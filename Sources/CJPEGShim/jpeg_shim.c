// libjpeg signals errors through error_exit, which by default calls exit(). Recovering needs
// setjmp/longjmp, which Swift cannot express, hence this file.
#include "jpeg_shim.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

struct dctl_error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *err;
    size_t err_size;
};

static void dctl_set_error(char *err, size_t err_size, const char *message) {
    if (err && err_size) {
        snprintf(err, err_size, "%s", message);
    }
}

static void dctl_error_exit(j_common_ptr cinfo) {
    struct dctl_error_mgr *mgr = (struct dctl_error_mgr *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    dctl_set_error(mgr->err, mgr->err_size, buffer);
    longjmp(mgr->jump, 1);
}

// Warnings follow PIL, whose decode Keras uses: running out of data ("Premature end of JPEG
// file": the memory source then feeds a fake EOI and the rest would decode as grey) is an error,
// as PIL raises "image file is truncated"; every other warning (extraneous bytes before a marker,
// premature end of data segment, ...) is ignored, as PIL ignores it and still returns the pixels.
static void dctl_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        dctl_error_exit(cinfo);
    }
}

// The DCT scaling 1/s for a photo at least twice min_width x min_height: the largest s of 8, 4,
// 2 with s <= min(width / min_width, height / min_height) (integer division), as PIL's
// JpegImageFile.draft and TensorFlow's decode_jpeg(ratio=) choose their scales, so that the output
// (ceil(size / s)) still covers the target and the later resize only shrinks. 1: no scaling.
static int dctl_scale_for(int width, int height, int min_width, int min_height) {
    if (min_width <= 0 || min_height <= 0) {
        return 1;
    }
    int fit = width / min_width < height / min_height ? width / min_width : height / min_height;
    return fit >= 8 ? 8 : fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
}

// requested: 1 (grey), 3 (RGB) or 0 (the stored colour space: grey, RGB or CMYK).
// min_width, min_height > 0: decode at a reduced scale when the photo is at least twice that.
static int dctl_decode(const uint8_t *data, size_t size, int requested, int min_width, int min_height,
                       uint8_t **out, int *width, int *height, int *channels,
                       char *err, size_t err_size) {
    struct jpeg_decompress_struct cinfo;
    struct dctl_error_mgr jerr;
    uint8_t *volatile pixels = NULL;
    *out = NULL;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = dctl_error_exit;
    jerr.pub.emit_message = dctl_emit_message;
    jerr.err = err;
    jerr.err_size = err_size;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int expected = requested;
    if (requested == 0) {
        expected = cinfo.num_components == 4 ? 4 : cinfo.num_components == 1 ? 1 : 3;
    }
    cinfo.out_color_space = expected == 1 ? JCS_GRAYSCALE : expected == 4 ? JCS_CMYK : JCS_RGB;
    int denom = dctl_scale_for((int)cinfo.image_width, (int)cinfo.image_height, min_width, min_height);
    if (denom != 1) {
        cinfo.scale_num = 1;
        cinfo.scale_denom = (unsigned int)denom;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
    if (c != expected) {
        char message[64];
        snprintf(message, sizeof message, "unexpected channel count %d", c);
        dctl_set_error(err, err_size, message);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    size_t stride = (size_t)w * (size_t)c;
    pixels = malloc(stride * (size_t)h);
    if (!pixels) {
        char message[64];
        snprintf(message, sizeof message, "out of memory for %dx%d image", w, h);
        dctl_set_error(err, err_size, message);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *out = pixels;
    *width = w;
    *height = h;
    if (channels) {
        *channels = c;
    }
    return 0;
}

int dctl_jpeg_decode(const uint8_t *data, size_t size, int channels,
                     uint8_t **out, int *width, int *height, char *err, size_t err_size) {
    if (channels != 1 && channels != 3) {
        *out = NULL;
        dctl_set_error(err, err_size, "channels must be 1 or 3");
        return -1;
    }
    return dctl_decode(data, size, channels, 0, 0, out, width, height, NULL, err, err_size);
}

int dctl_jpeg_decode_native(const uint8_t *data, size_t size, int min_width, int min_height,
                            uint8_t **out, int *width, int *height, int *channels,
                            char *err, size_t err_size) {
    return dctl_decode(data, size, 0, min_width, min_height, out, width, height, channels, err, err_size);
}

struct dctl_jpeg_reader {
    struct jpeg_decompress_struct cinfo;
    struct dctl_error_mgr jerr;
};

dctl_jpeg_reader *dctl_jpeg_open(const uint8_t *data, size_t size, int min_width, int min_height,
                                 int *width, int *height, int *channels, char *err, size_t err_size) {
    dctl_jpeg_reader *volatile reader = malloc(sizeof(dctl_jpeg_reader));
    if (!reader) {
        dctl_set_error(err, err_size, "out of memory");
        return NULL;
    }
    reader->cinfo.err = jpeg_std_error(&reader->jerr.pub);
    reader->jerr.pub.error_exit = dctl_error_exit;
    reader->jerr.pub.emit_message = dctl_emit_message;
    reader->jerr.err = err;
    reader->jerr.err_size = err_size;
    if (setjmp(reader->jerr.jump)) {
        jpeg_destroy_decompress(&reader->cinfo);
        free(reader);
        return NULL;
    }
    jpeg_create_decompress(&reader->cinfo);
    jpeg_mem_src(&reader->cinfo, data, (unsigned long)size);
    jpeg_read_header(&reader->cinfo, TRUE);
    // The stored colour space, as dctl_decode chooses it for requested = 0.
    int c = reader->cinfo.num_components == 4 ? 4 : reader->cinfo.num_components == 1 ? 1 : 3;
    reader->cinfo.out_color_space = c == 1 ? JCS_GRAYSCALE : c == 4 ? JCS_CMYK : JCS_RGB;
    // The DCT scaling as dctl_decode chooses it, and the size it decodes to.
    int denom = dctl_scale_for((int)reader->cinfo.image_width, (int)reader->cinfo.image_height, min_width, min_height);
    if (denom != 1) {
        reader->cinfo.scale_num = 1;
        reader->cinfo.scale_denom = (unsigned int)denom;
    }
    jpeg_calc_output_dimensions(&reader->cinfo);
    *width = (int)reader->cinfo.output_width;
    *height = (int)reader->cinfo.output_height;
    *channels = c;
    return reader;
}

void dctl_jpeg_close(dctl_jpeg_reader *reader) {
    jpeg_destroy_decompress(&reader->cinfo);
    free(reader);
}

int dctl_jpeg_decode_picked(dctl_jpeg_reader *reader, const int *rows, int out_height, const int *columns, int out_width,
                            uint8_t *out, char *err, size_t err_size) {
    uint8_t *volatile row = NULL;
    reader->jerr.err = err;
    reader->jerr.err_size = err_size;
    if (setjmp(reader->jerr.jump)) {
        free(row);
        dctl_jpeg_close(reader);
        return -1;
    }
    jpeg_start_decompress(&reader->cinfo);
    int w = (int)reader->cinfo.output_width, h = (int)reader->cinfo.output_height, c = reader->cinfo.output_components;
    row = malloc((size_t)w * (size_t)c);
    if (!row) {
        dctl_set_error(err, err_size, "out of memory");
        dctl_jpeg_close(reader);
        return -1;
    }
    size_t out_stride = (size_t)out_width * (size_t)c;
    // Rows past the source (-1) stay 0, as in the resize; `rows` only grows otherwise.
    memset(out, 0, out_stride * (size_t)out_height);
    int next = 0;
    while (next < out_height && rows[next] < 0) {
        next++;
    }
    // Every scanline is decoded, picked or not, so that a file the full decode refuses (a
    // truncated one, an error late in the scan) is refused here too.
    while (reader->cinfo.output_scanline < reader->cinfo.output_height) {
        int y = (int)reader->cinfo.output_scanline;
        JSAMPROW target = row;
        jpeg_read_scanlines(&reader->cinfo, &target, 1);
        int first = next;
        while (next < out_height && rows[next] == y) {
            uint8_t *to = out + out_stride * (size_t)next;
            if (next > first) {
                memcpy(to, out + out_stride * (size_t)first, out_stride);
            } else if (c == 3) {
                for (int x = 0; x < out_width; x++) {
                    int from = columns[x];
                    if (from >= 0 && from < w) {
                        to[3 * x] = row[3 * from];
                        to[3 * x + 1] = row[3 * from + 1];
                        to[3 * x + 2] = row[3 * from + 2];
                    }
                }
            } else {
                for (int x = 0; x < out_width; x++) {
                    int from = columns[x];
                    if (from >= 0 && from < w) {
                        memcpy(to + (size_t)x * (size_t)c, row + (size_t)from * (size_t)c, (size_t)c);
                    }
                }
            }
            next++;
            while (next < out_height && rows[next] < 0) {
                next++;
            }
        }
    }
    (void)h;
    jpeg_finish_decompress(&reader->cinfo);
    free(row);
    dctl_jpeg_close(reader);
    return 0;
}

int dctl_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                     uint8_t **out, unsigned long *out_size, char *err, size_t err_size) {
    struct jpeg_compress_struct cinfo;
    struct dctl_error_mgr jerr;
    *out = NULL;
    *out_size = 0;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = dctl_error_exit;
    jerr.err = err;
    jerr.err_size = err_size;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        // jpeg_mem_dest malloc'd *out already; it is not freed by jpeg_destroy_compress.
        free(*out);
        *out = NULL;
        *out_size = 0;
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, out, out_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + stride * cinfo.next_scanline);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}
