/* Compiled fast paths of spikeflow's event-file decoders (see _native.py).
 *
 * Every function reads only inside [buf, buf + len) and writes at most `cap` events
 * into `out`, an array of spikeflow's packed EVENT_DTYPE (13 bytes: int64 t, uint16 x,
 * uint16 y, int8 p, little-endian). It validates as it goes and returns the number of
 * events written, or a negative code on anything it does not accept (truncation,
 * coordinates outside the sensor, time going backwards, unknown words, ...); the
 * Python caller then runs the numpy decoder, which locates and names the problem.
 * meta[0] and meta[1] receive the largest x and y written (-1 without events).
 * width < 0 means "no sensor given": coordinates are not checked against one.
 */
#include <stdint.h>
#include <string.h>

#define EV_SIZE 13
#define FAIL_TRUNCATED -1
#define FAIL_SENSOR -2
#define FAIL_TIME -3
#define FAIL_WORD -4
#define FAIL_CAPACITY -5
#define FAIL_ARGS -6

/* A TIME_HIGH decrease is a wrap-around of its counter only from within LOOP_THRESHOLD
 * periods of the top to near 0 (Prophesee's LoopThreshold); any other decrease fails
 * (a corrupted time word: see _evt.py). */
#define LOOP_THRESHOLD 10

static inline void put_event(uint8_t *o, int64_t t, uint16_t x, uint16_t y, int8_t p) {
    memcpy(o, &t, 8);
    uint32_t xy = (uint32_t)x | (uint32_t)y << 16;
    memcpy(o + 8, &xy, 4);
    memcpy(o + 12, &p, 1);
}

static inline uint32_t le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* ATIS / N-MNIST 40-bit .bin: x, y, p|t[22:16], t[15:8], t[7:0]; y == 240 is a
 * timestamp-overflow marker (+2**13 us for every later event), not an event. */
int64_t sf_atis_bin(const uint8_t *buf, int64_t len, int64_t width, int64_t height,
                    uint8_t *out, int64_t cap, int64_t *meta) {
    if (len < 0 || len % 5 || cap < len / 5) return FAIL_ARGS;
    int64_t n = len / 5, k = 0, offset = 0, last = INT64_MIN;
    int32_t xmax = -1, ymax = -1;
    const int check = width >= 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *e = buf + 5 * i;
        uint32_t x = e[0], y = e[1];
        if (y == 240) {
            offset += 1 << 13;
            continue;
        }
        if (check && (x >= (uint64_t)width || y >= (uint64_t)height)) return FAIL_SENSOR;
        int64_t t = ((int64_t)(e[2] & 0x7F) << 16 | (int64_t)e[3] << 8 | e[4]) + offset;
        if (t < last) return FAIL_TIME;
        last = t;
        if ((int32_t)x > xmax) xmax = x;
        if ((int32_t)y > ymax) ymax = y;
        put_event(out + EV_SIZE * k, t, (uint16_t)x, (uint16_t)y, (int8_t)(e[2] >> 7));
        k++;
    }
    meta[0] = xmax;
    meta[1] = ymax;
    return k;
}

/* AEDAT 3.x polarity packets: the caller walked the packet headers and passes, per
 * polarity packet, the byte offset of its first event, its event count and its
 * timestamp overflow. Events: uint32 address (bit 0 valid, bit 1 polarity, y bits
 * 2-16, x bits 17-31), int32 timestamp (negative: rejected). */
int64_t sf_aedat31(const uint8_t *buf, int64_t len, const int64_t *bodies,
                   const int64_t *counts, const int64_t *overflows, int64_t npackets,
                   int64_t width, int64_t height, uint8_t *out, int64_t cap, int64_t *meta) {
    int64_t k = 0, last = INT64_MIN;
    int32_t xmax = -1, ymax = -1;
    const int check = width >= 0;
    for (int64_t j = 0; j < npackets; j++) {
        int64_t body = bodies[j], count = counts[j], ovf = overflows[j];
        if (body < 0 || count < 0 || body > len || count > (len - body) / 8) return FAIL_TRUNCATED;
        if (ovf < 0 || ovf > ((int64_t)1 << 31)) return FAIL_ARGS;
        if (count > cap - k) return FAIL_CAPACITY;
        const int64_t high = ovf << 31;
        const uint8_t *e = buf + body;
        for (int64_t i = 0; i < count; i++, e += 8) {
            uint32_t a = le32(e), ts = le32(e + 4);
            if (ts >> 31) return FAIL_TIME;
            if (!(a & 1)) continue;
            uint32_t x = a >> 17, y = (a >> 2) & 0x7FFF;
            if (check && (x >= (uint64_t)width || y >= (uint64_t)height)) return FAIL_SENSOR;
            int64_t t = high | ts;
            if (t < last) return FAIL_TIME;
            last = t;
            if ((int32_t)x > xmax) xmax = x;
            if ((int32_t)y > ymax) ymax = y;
            put_event(out + EV_SIZE * k, t, (uint16_t)x, (uint16_t)y, (int8_t)((a >> 1) & 1));
            k++;
        }
    }
    meta[0] = xmax;
    meta[1] = ymax;
    return k;
}

/* jAER '#' text header (AEDAT 1.0/2.0): returns the offset of the first byte after the
 * leading lines that start with '#' (each ends with '\n'), or FAIL_TRUNCATED when such a
 * line runs to the end of the buffer. The header also ends right after a line
 * "#End Of ASCII Header" (then optional spaces, tabs, '\r'), and, once a "#End of Pref"
 * key line was seen, before a '#' line that holds anything but printable ASCII, tab or
 * '\r' (a binary record whose first byte is 0x23; also when it has no '\n'): as
 * aedat2._jaer_header_end. For the lines that name one of the keys below
 * (the ones aedat2._KEYS lists, in that order: "!AER-DAT" right after the '#', the
 * others after '#' and optional ASCII whitespace), found[2i] = the line's offset and
 * found[2i + 1] = the key's index; *nfound = their number (FAIL_CAPACITY beyond cap). */
static const char *const JAER_KEYS[] = {"!AER-DAT", "HardwareInterface:", "AEChip:",
                                        "Start of Pref", "End of Pref"};
static const char JAER_END_OF_HEADER[] = "#End Of ASCII Header";

static inline int is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int is_text(const uint8_t *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(p[i] == '\t' || p[i] == '\r' || (p[i] >= 0x20 && p[i] <= 0x7E))) return 0;
    return 1;
}

static int is_end_of_header(const uint8_t *line, int64_t n) {
    const int64_t m = (int64_t)sizeof(JAER_END_OF_HEADER) - 1;
    if (n < m || memcmp(line, JAER_END_OF_HEADER, (size_t)m) != 0) return 0;
    for (int64_t i = m; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') return 0;
    return 1;
}

int64_t sf_jaer_header(const uint8_t *buf, int64_t len, int64_t *found, int64_t cap,
                       int64_t *nfound) {
    int64_t pos = 0, k = 0;
    int after_prefs = 0;
    *nfound = 0;
    while (pos < len && buf[pos] == '#') {
        const uint8_t *nl = memchr(buf + pos, '\n', (size_t)(len - pos));
        int64_t stop = nl == NULL ? len : nl - buf; /* the line is [pos, stop) */
        if (after_prefs && !is_text(buf + pos, stop - pos)) break; /* a binary record */
        if (nl == NULL) return FAIL_TRUNCATED;
        int64_t key = -1;
        if (stop - pos - 1 >= 8 && memcmp(buf + pos + 1, JAER_KEYS[0], 8) == 0) {
            key = 0;
        } else {
            int64_t q = pos + 1;
            while (q < stop && is_space(buf[q])) q++;
            for (int64_t j = 1; j < 5 && key < 0; j++) {
                int64_t n = (int64_t)strlen(JAER_KEYS[j]);
                if (stop - q >= n && memcmp(buf + q, JAER_KEYS[j], (size_t)n) == 0) key = j;
            }
        }
        if (key >= 0) {
            if (k >= cap) return FAIL_CAPACITY;
            found[2 * k] = pos;
            found[2 * k + 1] = key;
            k++;
        }
        int end_of_header = is_end_of_header(buf + pos, stop - pos);
        pos = stop + 1;
        if (end_of_header) break;
        if (key == 4) after_prefs = 1;
    }
    *nfound = k;
    return pos;
}

/* jAER AEDAT 1.0/2.0: big-endian records from `start`, `rec` = 6 (uint16 address) or
 * 8 (uint32 address) bytes, then a uint32 timestamp. layout 0 = DVS128, 1 = DAVIS.
 * A timestamp that decreases (a wrap-around at 2**32 or an error) is left to the numpy
 * path. */
int64_t sf_aedat2(const uint8_t *buf, int64_t len, int64_t start, int64_t rec,
                  int64_t layout, int64_t width, int64_t height, uint8_t *out, int64_t cap,
                  int64_t *meta) {
    if (start < 0 || start > len || (rec != 6 && rec != 8) || width <= 0 || height <= 0 ||
        width > 65536)
        return FAIL_ARGS;
    if ((len - start) % rec) return FAIL_TRUNCATED;
    int64_t n = (len - start) / rec, k = 0;
    if (cap < n) return FAIL_CAPACITY;
    int64_t last = -1;
    int32_t xmax = -1, ymax = -1;
    const uint8_t *e = buf + start;
    for (int64_t i = 0; i < n; i++, e += rec) {
        uint32_t a, t;
        if (rec == 8) {
            a = be32(e);
            t = be32(e + 4);
        } else {
            a = (uint32_t)e[0] << 8 | e[1];
            t = be32(e + 2);
        }
        uint32_t xr, y, p;
        if (layout == 0) {
            if (a & 0x7FFF0000u) return FAIL_WORD;
            if (a & 0x80008000u) continue;
            xr = (a >> 1) & 0x7F;
            y = (a >> 8) & 0x7F;
            p = 1 - (a & 1); /* bit 0 set: OFF (jAER's DVS128 extractor) */
        } else {
            if (a & 0x80000400u) continue;
            xr = (a >> 12) & 0x3FF;
            y = (a >> 22) & 0x1FF;
            p = (a >> 11) & 1;
        }
        if (xr >= (uint64_t)width || y >= (uint64_t)height) return FAIL_SENSOR;
        if ((int64_t)t < last) return FAIL_TIME;
        last = t;
        uint32_t x = (uint32_t)(width - 1) - xr;
        if ((int32_t)x > xmax) xmax = x;
        if ((int32_t)y > ymax) ymax = y;
        put_event(out + EV_SIZE * k, (int64_t)t, (uint16_t)x, (uint16_t)y, (int8_t)p);
        k++;
    }
    meta[0] = xmax;
    meta[1] = ymax;
    return k;
}

/* Prophesee EVT 2.0: little-endian 32-bit words from `start`, type in bits 31-28.
 * CD_OFF/CD_ON (0/1) need a TIME_HIGH (8) before them (else dropped); a decrease of
 * the 28-bit TIME_HIGH counts one wrap (see LOOP_THRESHOLD). 10, 14, 15 are skipped;
 * other types fail. */
int64_t sf_evt2(const uint8_t *buf, int64_t len, int64_t start, int64_t width,
                int64_t height, uint8_t *out, int64_t cap, int64_t *meta) {
    if (start < 0 || start > len) return FAIL_ARGS;
    if ((len - start) % 4) return FAIL_TRUNCATED;
    int64_t n = (len - start) / 4, k = 0, last = INT64_MIN, high = -1, wraps = 0;
    if (cap < n) return FAIL_CAPACITY;
    uint32_t raw_high = 0;
    int32_t xmax = -1, ymax = -1;
    const int check = width >= 0;
    const uint8_t *e = buf + start;
    for (int64_t i = 0; i < n; i++, e += 4) {
        uint32_t w = le32(e), typ = w >> 28;
        if (typ <= 1) {
            if (high < 0) continue;
            uint32_t x = (w >> 11) & 0x7FF, y = w & 0x7FF;
            if (check && (x >= (uint64_t)width || y >= (uint64_t)height)) return FAIL_SENSOR;
            int64_t t = high | ((w >> 22) & 0x3F);
            if (t < last) return FAIL_TIME;
            last = t;
            if ((int32_t)x > xmax) xmax = x;
            if ((int32_t)y > ymax) ymax = y;
            put_event(out + EV_SIZE * k, t, (uint16_t)x, (uint16_t)y, (int8_t)typ);
            k++;
        } else if (typ == 8) {
            uint32_t raw = w & 0x0FFFFFFF;
            if (high >= 0 && raw < raw_high) {
                if (raw_high - raw < ((uint32_t)1 << 28) - 1 - LOOP_THRESHOLD) return FAIL_TIME;
                wraps++;
            }
            raw_high = raw;
            high = ((int64_t)raw + (wraps << 28)) << 6;
        } else if (typ != 10 && typ != 14 && typ != 15) {
            return FAIL_WORD;
        }
    }
    meta[0] = xmax;
    meta[1] = ymax;
    return k;
}

/* Prophesee EVT 3.0: an upper bound of the events of the words from `start` (one per
 * EVT_ADDR_X, one per set mask bit of VECT_12 / VECT_8), to size sf_evt3's output. */
int64_t sf_evt3_bound(const uint8_t *buf, int64_t len, int64_t start) {
    if (start < 0 || start > len) return FAIL_ARGS;
    int64_t n = (len - start) / 2, k = 0;
    const uint8_t *e = buf + start;
    for (int64_t i = 0; i < n; i++, e += 2) {
        uint32_t word = (uint32_t)e[0] | (uint32_t)e[1] << 8, typ = word >> 12;
        if (typ == 2)
            k++;
        else if (typ == 4)
            k += __builtin_popcount(word & 0xFFF);
        else if (typ == 5)
            k += __builtin_popcount(word & 0xFF);
    }
    return k;
}

/* Prophesee EVT 3.0: little-endian 16-bit words from `start`, type in bits 15-12, a
 * state machine: ADDR_Y (0) sets y; ADDR_X (2) emits one event; VECT_BASE_X (3) sets
 * the vector base x and polarity; VECT_12 (4) / VECT_8 (5) emit one event per set mask
 * bit at base + bit and advance the base by 12 / 8; TIME_LOW (6) / TIME_HIGH (8) set
 * the 12-bit halves of the time base (a TIME_HIGH decrease counts one wrap, see
 * LOOP_THRESHOLD); 7, 10, 14,
 * 15 are skipped; other types fail. Events before the first y / TIME_HIGH (and, for
 * vectors, base) are dropped. `cap` bounds the events written (12 per word at most). */
int64_t sf_evt3(const uint8_t *buf, int64_t len, int64_t start, int64_t width,
                int64_t height, uint8_t *out, int64_t cap, int64_t *meta) {
    if (start < 0 || start > len) return FAIL_ARGS;
    if ((len - start) % 2) return FAIL_TRUNCATED;
    int64_t n = (len - start) / 2, k = 0, last = INT64_MIN, wraps = 0, low = 0;
    int64_t base = 0;
    int has_y = 0, has_high = 0, has_base = 0;
    uint32_t y = 0, vpol = 0, high_raw = 0;
    int64_t tbase = 0; /* (unwrapped high) << 12 */
    int64_t xmax = -1, ymax = -1;
    const int64_t w_lim = width >= 0 ? width : 65536, h_lim = height >= 0 ? height : 65536;
    const uint8_t *e = buf + start;
    for (int64_t i = 0; i < n; i++, e += 2) {
        uint32_t word = (uint32_t)e[0] | (uint32_t)e[1] << 8, typ = word >> 12,
                 val = word & 0xFFF;
        switch (typ) {
        case 0:
            y = val & 0x7FF;
            has_y = 1;
            break;
        case 2:
            if (has_y && has_high) {
                int64_t x = val & 0x7FF, t = tbase | low;
                if (x >= w_lim || (int64_t)y >= h_lim) return FAIL_SENSOR;
                if (t < last) return FAIL_TIME;
                if (k >= cap) return FAIL_CAPACITY;
                last = t;
                if (x > xmax) xmax = x;
                if ((int64_t)y > ymax) ymax = y;
                put_event(out + EV_SIZE * k, t, (uint16_t)x, (uint16_t)y, (int8_t)(val >> 11));
                k++;
            }
            break;
        case 3:
            base = val & 0x7FF;
            vpol = val >> 11;
            has_base = 1;
            break;
        case 4:
        case 5: {
            uint32_t mask = typ == 4 ? val : (val & 0xFF);
            if (has_y && has_high && has_base && mask) {
                int64_t t = tbase | low;
                if (t < last) return FAIL_TIME;
                if ((int64_t)y >= h_lim) return FAIL_SENSOR;
                last = t;
                for (int b = 0; b < 12; b++) {
                    if (!(mask >> b & 1)) continue;
                    int64_t x = base + b;
                    if (x >= w_lim) return FAIL_SENSOR;
                    if (k >= cap) return FAIL_CAPACITY;
                    if (x > xmax) xmax = x;
                    put_event(out + EV_SIZE * k, t, (uint16_t)x, (uint16_t)y, (int8_t)vpol);
                    k++;
                }
                if ((int64_t)y > ymax) ymax = y;
            }
            base += typ == 4 ? 12 : 8;
            if (base > ((int64_t)1 << 40)) base = (int64_t)1 << 40; /* any x past it fails */
            break;
        }
        case 6:
            low = val;
            break;
        case 8:
            if (has_high && val < high_raw) {
                if (high_raw - val < (1u << 12) - 1 - LOOP_THRESHOLD) return FAIL_TIME;
                wraps++;
            }
            high_raw = val;
            has_high = 1;
            tbase = ((int64_t)val + (wraps << 12)) << 12;
            break;
        case 7:
        case 10:
        case 14:
        case 15:
            break;
        default:
            return FAIL_WORD;
        }
    }
    meta[0] = xmax;
    meta[1] = ymax;
    return k;
}
