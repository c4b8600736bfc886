/* Random initialisation of a UNet for training from scratch, as PyTorch
 * initialises the seed's UNetModel (SEED.md 1.5):
 *  - weights of rank >= 2 (Linear, Conv2d, ConvTranspose2d):
 *    kaiming_uniform(a = sqrt 5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *    with fan_in = shape[1] * prod(shape[2:]) (torch's rule, also for the
 *    transposed conv's [in, out, k, k] weight);
 *  - their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the weight's fan_in;
 *  - GroupNorm / LayerNorm: weight 1, bias 0;
 *  - the seed's zero-initialised modules (seed topology): every ResBlock's
 *    conv2, SpatialTransformer.proj_out, both attentions' to_out, the
 *    transformer MLP's last Linear (mlp.2) and conv_out: weight and bias 0.
 * Random values come from the Philox stream (seed, subsequence 0x696e6974 +
 * parameter index): uniform u in [0, 1) -> (2u - 1) * bound. The result does
 * not depend on threads or backend. */
#ifndef SDW_TRAIN_UNET_INIT_H
#define SDW_TRAIN_UNET_INIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/model/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Overwrites every parameter of m (created, on any backend). */
sdw_status sdw_unet_init_random(sdw_unet *m, uint64_t seed);

/* Which modules of a seed-topology UNet start at zero. */
typedef enum sdw_zero_init {
  SDW_ZERO_INIT_SEED = 0, /* the seed's list above */
  /* CompVis LDM's zero_module calls only: ResBlock conv2, proj_out and
   * conv_out. The attentions' to_out and the MLP's last Linear get the
   * default init, so the cross-attention learns from the first steps after
   * proj_out moves instead of waiting for two zero layers in a row (the
   * seed's to_out behind proj_out) */
  SDW_ZERO_INIT_LDM,
} sdw_zero_init;

/* "seed" / "ldm"; false when unknown. */
bool sdw_zero_init_from_name(const char *name, sdw_zero_init *out);

/* sdw_unet_init_random with a choice of zero-initialised modules (the
 * random values of every other parameter are the same for both). */
sdw_status sdw_unet_init_random_with(sdw_unet *m, uint64_t seed, sdw_zero_init zero);

/* The rule above for any parameter set whose names end in weight / bias
 * (the VAE's too): parameters for which zero(name, arg) is true (zero may
 * be NULL) start at 0. Parameter i draws from subsequence 0x696e6974 + i. */
sdw_status sdw_params_init_random(sdw_params *p, uint64_t seed,
                                  bool (*zero)(const char *name, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
