/** weft's version, printed by `weft version` and reported in metrics. */
export const WEFT_VERSION = "0.1.0";
