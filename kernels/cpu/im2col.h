/* im2col / col2im for the CPU convolutions (private to kernels/cpu).
 *
 * A convolution of an image img[C,H,W] with a KHxKW kernel (stride, pad)
 * has Ho x Wo outputs; its column matrix col[C*KH*KW, Ho*Wo] holds, in row
 * (c*KH + kh)*KW + kw and column oh*Wo + ow, the input pixel
 * img[c, oh*stride - pad + kh, ow*stride - pad + kw] (0 outside the image),
 * so the convolution is the GEMM w[Co, C*KH*KW] @ col. Both helpers work on
 * a band of output rows [oh0, oh1) so callers can keep the column buffer
 * small (cache-resident); col then has (oh1-oh0)*Wo columns.
 *
 * Neither helper allocates; the caller owns every buffer. */
#ifndef SDW_KERNELS_CPU_IM2COL_H
#define SDW_KERNELS_CPU_IM2COL_H

#include <stdint.h>

/* Below this many floats of work a loop runs on one thread: waking the team
 * costs more than the loop (and a lot on a loaded machine). */
enum { SDW_CONV_PARALLEL_MIN = 1 << 16 };

typedef struct sdw_conv_geom {
  int C, H, W; /* image: channels, height, width */
  int KH, KW;  /* kernel */
  int stride, pad;
  int Ho, Wo; /* (H + 2*pad - KH)/stride + 1, same for W */
} sdw_conv_geom;

/* Fills in Ho and Wo from the rest (either may come out <= 0: caller checks). */
void sdw_conv_geom_finish(sdw_conv_geom *g);

/* Output rows per band for a column matrix of col_rows rows (col_rows * Wo
 * floats per output row) that multiplies a weight matrix of weight_floats:
 * each band's GEMM packs the weights again, so a band holds at least ~2x the
 * weights' bytes (and >= 16 MiB); at most 64 MiB of scratch for huge planes
 * (at least one row). Bands come out even-sized. */
int sdw_conv_band_rows(const sdw_conv_geom *g, int64_t col_rows, int64_t weight_floats);

/* col[C*KH*KW, (oh1-oh0)*Wo] = the column matrix of img[C,H,W] for output
 * rows [oh0, oh1) (overwritten). Runs on up to num_threads OpenMP threads;
 * call it from outside a parallel region (or with num_threads 1). */
void sdw_im2col(const sdw_conv_geom *g, const float *img, int oh0, int oh1, float *col,
                int num_threads);

/* The adjoint: img[C,H,W] += col2im(col[C*KH*KW, (oh1-oh0)*Wo]) for output
 * rows [oh0, oh1). Threads split channels, so no two write the same pixel. */
void sdw_col2im_add(const sdw_conv_geom *g, const float *col, int oh0, int oh1, float *img,
                    int num_threads);

#endif
