// libpng through Swift: setjmp-based error handling cannot cross into Swift, so encoding and
// decoding run entirely in these C helpers, which return 0 on success.
#include <png.h>
#include <stdlib.h>
#include <string.h>

/// Encodes 8-bit RGB (channels 3) or grayscale (channels 1) rows into a PNG in memory.
/// On success *out is malloc'd (free with free()) and *out_len set. Returns 0, or -1 on error.
static inline int ditkit_png_encode(const unsigned char *pixels, int width, int height, int channels,
                                    unsigned char **out, size_t *out_len) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) return -1;
    unsigned char *buf = malloc(size);
    if (!buf) return -1;
    if (!png_image_write_to_memory(&image, buf, &size, 0, pixels, 0, NULL)) { free(buf); return -1; }
    *out = buf;
    *out_len = (size_t)size;
    return 0;
}

/// Decodes a PNG in memory to 8-bit RGB. On success *pixels is malloc'd (width*height*3 bytes).
static inline int ditkit_png_decode_rgb(const unsigned char *data, size_t len, unsigned char **pixels, int *width, int *height) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, len)) return -1;
    image.format = PNG_FORMAT_RGB;
    if (image.width > 65536 || image.height > 65536) { png_image_free(&image); return -1; }
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(image));
    if (!buf) { png_image_free(&image); return -1; }
    if (!png_image_finish_read(&image, NULL, buf, 0, NULL)) { free(buf); return -1; }
    *pixels = buf;
    *width = (int)image.width;
    *height = (int)image.height;
    return 0;
}
