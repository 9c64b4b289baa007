/* Kernel VFIO/iommufd uAPI numbers and sizes (see csystem_vfio.h). */
#include "csystem_vfio.h"
#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

/* Linux >= 6.6 (vfio cdev): absent from older headers; public layout of include/uapi/linux/vfio.h. */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd { __u32 argsz; __u32 flags; __s32 iommufd; __u32 out_devid; };
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
struct vfio_device_attach_iommufd_pt { __u32 argsz; __u32 flags; __u32 pt_id; };
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/* include/uapi/linux/iommufd.h (Linux >= 6.2; IOAS_MAP_FILE >= 6.13), when the headers lack it. */
#if defined(__has_include)
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif
#endif
#ifndef IOMMU_IOAS_MAP
#define IOMMUFD_TYPE (';')
struct iommu_destroy { __u32 size; __u32 id; };
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)
struct iommu_ioas_alloc { __u32 size; __u32 flags; __u32 out_ioas_id; };
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
struct iommu_ioas_map { __u32 size; __u32 flags; __u32 ioas_id; __u32 __reserved; __aligned_u64 user_va;
                        __aligned_u64 length; __aligned_u64 iova; };
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
struct iommu_ioas_unmap { __u32 size; __u32 ioas_id; __aligned_u64 iova; __aligned_u64 length; };
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#endif
#ifndef IOMMU_IOAS_MAP_FILE
struct iommu_ioas_map_file { __u32 size; __u32 flags; __u32 ioas_id; __s32 fd; __aligned_u64 start;
                             __aligned_u64 length; __aligned_u64 iova; };
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, 0x8f)
#endif

unsigned long csystem_vfio_ioctl_number(int which) {
    switch (which) {
    case CSYSTEM_VFIO_GET_API_VERSION: return VFIO_GET_API_VERSION;
    case CSYSTEM_VFIO_CHECK_EXTENSION: return VFIO_CHECK_EXTENSION;
    case CSYSTEM_VFIO_SET_IOMMU: return VFIO_SET_IOMMU;
    case CSYSTEM_VFIO_GROUP_GET_STATUS: return VFIO_GROUP_GET_STATUS;
    case CSYSTEM_VFIO_GROUP_SET_CONTAINER: return VFIO_GROUP_SET_CONTAINER;
    case CSYSTEM_VFIO_GROUP_UNSET_CONTAINER: return VFIO_GROUP_UNSET_CONTAINER;
    case CSYSTEM_VFIO_GROUP_GET_DEVICE_FD: return VFIO_GROUP_GET_DEVICE_FD;
    case CSYSTEM_VFIO_DEVICE_GET_INFO: return VFIO_DEVICE_GET_INFO;
    case CSYSTEM_VFIO_DEVICE_GET_REGION_INFO: return VFIO_DEVICE_GET_REGION_INFO;
    case CSYSTEM_VFIO_DEVICE_GET_IRQ_INFO: return VFIO_DEVICE_GET_IRQ_INFO;
    case CSYSTEM_VFIO_DEVICE_SET_IRQS: return VFIO_DEVICE_SET_IRQS;
    case CSYSTEM_VFIO_DEVICE_RESET: return VFIO_DEVICE_RESET;
    case CSYSTEM_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: return VFIO_DEVICE_GET_PCI_HOT_RESET_INFO;
    case CSYSTEM_VFIO_DEVICE_PCI_HOT_RESET: return VFIO_DEVICE_PCI_HOT_RESET;
    case CSYSTEM_VFIO_IOMMU_GET_INFO: return VFIO_IOMMU_GET_INFO;
    case CSYSTEM_VFIO_IOMMU_MAP_DMA: return VFIO_IOMMU_MAP_DMA;
    case CSYSTEM_VFIO_IOMMU_UNMAP_DMA: return VFIO_IOMMU_UNMAP_DMA;
    case CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD: return VFIO_DEVICE_BIND_IOMMUFD;
    case CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT: return VFIO_DEVICE_ATTACH_IOMMUFD_PT;
    case CSYSTEM_VFIO_DEVICE_DETACH_IOMMUFD_PT: return VFIO_DEVICE_DETACH_IOMMUFD_PT;
    case CSYSTEM_IOMMU_DESTROY: return IOMMU_DESTROY;
    case CSYSTEM_IOMMU_IOAS_ALLOC: return IOMMU_IOAS_ALLOC;
    case CSYSTEM_IOMMU_IOAS_MAP: return IOMMU_IOAS_MAP;
    case CSYSTEM_IOMMU_IOAS_UNMAP: return IOMMU_IOAS_UNMAP;
    case CSYSTEM_IOMMU_IOAS_MAP_FILE: return IOMMU_IOAS_MAP_FILE;
    default: return 0;
    }
}

int csystem_vfio_struct_size(int which) {
    switch (which) {
    case CSYSTEM_VFIO_GROUP_STATUS: return (int)sizeof(struct vfio_group_status);
    case CSYSTEM_VFIO_DEVICE_INFO: return (int)sizeof(struct vfio_device_info);
    case CSYSTEM_VFIO_REGION_INFO: return (int)sizeof(struct vfio_region_info);
    case CSYSTEM_VFIO_INFO_CAP_HEADER: return (int)sizeof(struct vfio_info_cap_header);
    case CSYSTEM_VFIO_REGION_SPARSE_MMAP_AREA: return (int)sizeof(struct vfio_region_sparse_mmap_area);
    case CSYSTEM_VFIO_REGION_INFO_CAP_SPARSE_MMAP: return (int)sizeof(struct vfio_region_info_cap_sparse_mmap);
    case CSYSTEM_VFIO_REGION_INFO_CAP_TYPE: return (int)sizeof(struct vfio_region_info_cap_type);
    case CSYSTEM_VFIO_IRQ_INFO: return (int)sizeof(struct vfio_irq_info);
    case CSYSTEM_VFIO_IRQ_SET: return (int)sizeof(struct vfio_irq_set);
    case CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE: return (int)sizeof(struct vfio_pci_dependent_device);
    case CSYSTEM_VFIO_PCI_HOT_RESET_INFO: return (int)sizeof(struct vfio_pci_hot_reset_info);
    case CSYSTEM_VFIO_PCI_HOT_RESET: return (int)sizeof(struct vfio_pci_hot_reset);
    case CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP: return (int)sizeof(struct vfio_iommu_type1_dma_map);
    case CSYSTEM_VFIO_IOMMU_TYPE1_DMA_UNMAP: return (int)sizeof(struct vfio_iommu_type1_dma_unmap);
    case CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD_S: return (int)sizeof(struct vfio_device_bind_iommufd);
    case CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT_S: return 12; /* argsz, flags, pt_id (the pasid member is optional) */
    case CSYSTEM_IOMMU_DESTROY_S: return (int)sizeof(struct iommu_destroy);
    case CSYSTEM_IOMMU_IOAS_ALLOC_S: return (int)sizeof(struct iommu_ioas_alloc);
    case CSYSTEM_IOMMU_IOAS_MAP_S: return (int)sizeof(struct iommu_ioas_map);
    case CSYSTEM_IOMMU_IOAS_UNMAP_S: return (int)sizeof(struct iommu_ioas_unmap);
    case CSYSTEM_IOMMU_IOAS_MAP_FILE_S: return (int)sizeof(struct iommu_ioas_map_file);
    default: return 0;
    }
}

#define OFF(s, f) (int)offsetof(struct s, f)
int csystem_vfio_field_offset(int which, int field) {
    switch (which) {
    case CSYSTEM_VFIO_DEVICE_INFO: {
        int o[] = { OFF(vfio_device_info, argsz), OFF(vfio_device_info, flags), OFF(vfio_device_info, num_regions),
                    OFF(vfio_device_info, num_irqs), OFF(vfio_device_info, cap_offset) };
        return field >= 0 && field < 5 ? o[field] : -1; }
    case CSYSTEM_VFIO_REGION_INFO: {
        int o[] = { OFF(vfio_region_info, argsz), OFF(vfio_region_info, flags), OFF(vfio_region_info, index),
                    OFF(vfio_region_info, cap_offset), OFF(vfio_region_info, size), OFF(vfio_region_info, offset) };
        return field >= 0 && field < 6 ? o[field] : -1; }
    case CSYSTEM_VFIO_IRQ_SET: {
        int o[] = { OFF(vfio_irq_set, argsz), OFF(vfio_irq_set, flags), OFF(vfio_irq_set, index),
                    OFF(vfio_irq_set, start), OFF(vfio_irq_set, count), OFF(vfio_irq_set, data) };
        return field >= 0 && field < 6 ? o[field] : -1; }
    case CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP: {
        int o[] = { OFF(vfio_iommu_type1_dma_map, argsz), OFF(vfio_iommu_type1_dma_map, flags),
                    OFF(vfio_iommu_type1_dma_map, vaddr), OFF(vfio_iommu_type1_dma_map, iova),
                    OFF(vfio_iommu_type1_dma_map, size) };
        return field >= 0 && field < 5 ? o[field] : -1; }
    case CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE: {
        int o[] = { OFF(vfio_pci_dependent_device, group_id), OFF(vfio_pci_dependent_device, segment),
                    OFF(vfio_pci_dependent_device, bus), OFF(vfio_pci_dependent_device, devfn) };
        return field >= 0 && field < 4 ? o[field] : -1; }
    case CSYSTEM_IOMMU_IOAS_MAP_S: {
        int o[] = { OFF(iommu_ioas_map, size), OFF(iommu_ioas_map, flags), OFF(iommu_ioas_map, ioas_id),
                    OFF(iommu_ioas_map, __reserved), OFF(iommu_ioas_map, user_va), OFF(iommu_ioas_map, length),
                    OFF(iommu_ioas_map, iova) };
        return field >= 0 && field < 7 ? o[field] : -1; }
    case CSYSTEM_IOMMU_IOAS_MAP_FILE_S: {
        int o[] = { OFF(iommu_ioas_map_file, size), OFF(iommu_ioas_map_file, flags), OFF(iommu_ioas_map_file, ioas_id),
                    OFF(iommu_ioas_map_file, fd), OFF(iommu_ioas_map_file, start), OFF(iommu_ioas_map_file, length),
                    OFF(iommu_ioas_map_file, iova) };
        return field >= 0 && field < 7 ? o[field] : -1; }
    default: return -1;
    }
}

int csystem_vfio_api_version(void) { return VFIO_API_VERSION; }
int csystem_vfio_type1_iommu(void) { return VFIO_TYPE1_IOMMU; }
int csystem_vfio_type1v2_iommu(void) { return VFIO_TYPE1v2_IOMMU; }

int csystem_ioctl_ptr(int fd, unsigned long request, void *arg) {
    int r;
    do { r = ioctl(fd, request, arg); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int csystem_ioctl_val(int fd, unsigned long request, unsigned long value) {
    int r;
    do { r = ioctl(fd, request, value); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}
