#ifndef CSYSTEM_VFIO_H
#define CSYSTEM_VFIO_H
/* The kernel VFIO and iommufd uAPI as the VFIO layer's kernel backend needs it: ioctl numbers and struct sizes,
 * declared once here. Numbers and the VFIO structs come from <linux/vfio.h> (the machine's kernel headers); what
 * those headers lack (iommufd, the VFIO cdev ioctls, Linux >= 6.2/6.6) is declared in vfio.c from the public layout
 * of include/uapi/linux/iommufd.h and vfio.h. Swift encodes each struct field by field (little endian); tests
 * check every encoder's length against the sizes below.
 *
 * Variadic ioctl(2) is not callable from Swift: csystem_ioctl_ptr/csystem_ioctl_val wrap it and return the
 * result, or -errno. */
#include <stdint.h>
#include <sys/types.h>

enum csystem_vfio_ioctl {
    CSYSTEM_VFIO_GET_API_VERSION = 0,
    CSYSTEM_VFIO_CHECK_EXTENSION,
    CSYSTEM_VFIO_SET_IOMMU,
    CSYSTEM_VFIO_GROUP_GET_STATUS,
    CSYSTEM_VFIO_GROUP_SET_CONTAINER,
    CSYSTEM_VFIO_GROUP_UNSET_CONTAINER,
    CSYSTEM_VFIO_GROUP_GET_DEVICE_FD,
    CSYSTEM_VFIO_DEVICE_GET_INFO,
    CSYSTEM_VFIO_DEVICE_GET_REGION_INFO,
    CSYSTEM_VFIO_DEVICE_GET_IRQ_INFO,
    CSYSTEM_VFIO_DEVICE_SET_IRQS,
    CSYSTEM_VFIO_DEVICE_RESET,
    CSYSTEM_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
    CSYSTEM_VFIO_DEVICE_PCI_HOT_RESET,
    CSYSTEM_VFIO_IOMMU_GET_INFO,
    CSYSTEM_VFIO_IOMMU_MAP_DMA,
    CSYSTEM_VFIO_IOMMU_UNMAP_DMA,
    CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD,
    CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    CSYSTEM_VFIO_DEVICE_DETACH_IOMMUFD_PT,
    CSYSTEM_IOMMU_DESTROY,
    CSYSTEM_IOMMU_IOAS_ALLOC,
    CSYSTEM_IOMMU_IOAS_MAP,
    CSYSTEM_IOMMU_IOAS_UNMAP,
    CSYSTEM_IOMMU_IOAS_MAP_FILE,
    CSYSTEM_VFIO_IOCTL_COUNT
};

enum csystem_vfio_struct {
    CSYSTEM_VFIO_GROUP_STATUS = 0,
    CSYSTEM_VFIO_DEVICE_INFO,
    CSYSTEM_VFIO_REGION_INFO,
    CSYSTEM_VFIO_INFO_CAP_HEADER,
    CSYSTEM_VFIO_REGION_SPARSE_MMAP_AREA,
    CSYSTEM_VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    CSYSTEM_VFIO_REGION_INFO_CAP_TYPE,
    CSYSTEM_VFIO_IRQ_INFO,
    CSYSTEM_VFIO_IRQ_SET,
    CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE,
    CSYSTEM_VFIO_PCI_HOT_RESET_INFO,
    CSYSTEM_VFIO_PCI_HOT_RESET,
    CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP,
    CSYSTEM_VFIO_IOMMU_TYPE1_DMA_UNMAP,
    CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD_S,
    CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT_S,
    CSYSTEM_IOMMU_DESTROY_S,
    CSYSTEM_IOMMU_IOAS_ALLOC_S,
    CSYSTEM_IOMMU_IOAS_MAP_S,
    CSYSTEM_IOMMU_IOAS_UNMAP_S,
    CSYSTEM_IOMMU_IOAS_MAP_FILE_S,
    CSYSTEM_VFIO_STRUCT_COUNT
};

/* The ioctl request number, or 0 for an unknown id. */
unsigned long csystem_vfio_ioctl_number(int which);
/* sizeof the struct (fixed part), or 0 for an unknown id. */
int csystem_vfio_struct_size(int which);
/* offsetof a named field, for the layout tests: which = struct id, field = index in declaration order; -1 if unknown. */
int csystem_vfio_field_offset(int which, int field);
/* VFIO_API_VERSION, VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU. */
int csystem_vfio_api_version(void);
int csystem_vfio_type1_iommu(void);
int csystem_vfio_type1v2_iommu(void);

/* ioctl(fd, request, arg): result (>= 0) or -errno. */
int csystem_ioctl_ptr(int fd, unsigned long request, void *arg);
int csystem_ioctl_val(int fd, unsigned long request, unsigned long value);

#endif
