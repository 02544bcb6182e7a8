// HDF5 through Swift: the library's type and flag "constants" are macros that call H5open(),
// which Swift cannot import, so they are wrapped in functions here.
#include <hdf5.h>

static inline hid_t ditkit_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t ditkit_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t ditkit_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t ditkit_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t ditkit_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t ditkit_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t ditkit_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t ditkit_h5t_c_s1(void) { return H5T_C_S1; }
static inline unsigned ditkit_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned ditkit_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t ditkit_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t ditkit_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t ditkit_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t ditkit_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline size_t ditkit_h5t_variable(void) { return H5T_VARIABLE; }
/// Turns off HDF5's automatic printing of its error stack (errors are reported by DiTKit).
static inline void ditkit_h5_silence(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
