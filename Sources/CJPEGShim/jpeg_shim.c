// libjpeg signals errors through error_exit, which by default calls exit(). Recovering needs
// setjmp/longjmp, which Swift cannot express, hence this file.
#include "jpeg_shim.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

struct dctl_error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *err;
    size_t err_size;
};

static void dctl_error_exit(j_common_ptr cinfo) {
    struct dctl_error_mgr *mgr = (struct dctl_error_mgr *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    if (mgr->err && mgr->err_size) {
        snprintf(mgr->err, mgr->err_size, "%s", buffer);
    }
    longjmp(mgr->jump, 1);
}

// Warnings (e.g. "premature end of data segment") are treated as errors: a truncated file
// must not silently decode into grey pixels.
static void dctl_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0) {
        dctl_error_exit(cinfo);
    }
}

int dctl_jpeg_decode(const uint8_t *data, size_t size, int channels,
                     uint8_t **out, int *width, int *height, char *err, size_t err_size) {
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
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
    if (c != channels) {
        snprintf(err, err_size, "unexpected channel count %d", c);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    size_t stride = (size_t)w * (size_t)c;
    pixels = malloc(stride * (size_t)h);
    if (!pixels) {
        snprintf(err, err_size, "out of memory for %dx%d image", w, h);
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
