/*
 * EXIF orientation: just enough of TIFF to read tag 0x0112 from IFD0.
 *
 * The input comes from the request body, so every read is checked against
 * the buffer size. A malformed structure means "no orientation" (1) and is
 * not an error, because OpenCV's imread ignores it too.
 */
#include "image.h"

#define TIFF_TYPE_SHORT 3
#define TIFF_TYPE_LONG 4
#define TIFF_TAG_ORIENTATION 0x0112
#define TIFF_ENTRY_SIZE 12

static uint32_t read_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t read_u32(const uint8_t *p, int big_endian)
{
    if (big_endian)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int yd_exif_orientation(const uint8_t *tiff, size_t size)
{
    int big_endian;
    uint32_t ifd, count;

    if (!tiff || size < 8)
        return 1;
    if (tiff[0] == 'I' && tiff[1] == 'I')
        big_endian = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M')
        big_endian = 1;
    else
        return 1;
    if (read_u16(tiff + 2, big_endian) != 42)
        return 1;

    ifd = read_u32(tiff + 4, big_endian);
    if (ifd > size - 2)
        return 1;
    count = read_u16(tiff + ifd, big_endian);

    for (uint32_t i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * TIFF_ENTRY_SIZE;
        uint32_t tag, type, value;

        if (entry + TIFF_ENTRY_SIZE > size)
            return 1;
        tag = read_u16(tiff + entry, big_endian);
        if (tag != TIFF_TAG_ORIENTATION)
            continue;

        /* A SHORT or LONG with count 1 is stored in the entry's value field. */
        type = read_u16(tiff + entry + 2, big_endian);
        if (read_u32(tiff + entry + 4, big_endian) != 1)
            return 1;
        if (type == TIFF_TYPE_SHORT)
            value = read_u16(tiff + entry + 8, big_endian);
        else if (type == TIFF_TYPE_LONG)
            value = read_u32(tiff + entry + 8, big_endian);
        else
            return 1;
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}
