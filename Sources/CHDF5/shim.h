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
/// File creation properties without object modification times (byte-identical outputs).
static inline hid_t ditkit_h5p_fcpl_untimed(void) {
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    return fcpl;
}
/// Dataset creation properties without modification times.
static inline hid_t ditkit_h5p_dcpl_untimed(void) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    return dcpl;
}
/// Group creation properties without modification times (intermediate groups).
static inline hid_t ditkit_h5p_lcpl_parents(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}
/// File access properties allowing the 1.8 format, where attributes larger than 64 KiB go to dense storage.
static inline hid_t ditkit_h5p_fapl_v18(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    return fapl;
}
static inline size_t ditkit_h5t_variable(void) { return H5T_VARIABLE; }
/// Turns off HDF5's automatic printing of its error stack (errors are reported by DiTKit).
static inline void ditkit_h5_silence(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
