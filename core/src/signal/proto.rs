//! NetBird's signal protocol messages (`shared/signal/proto/signalexchange.proto`, v0.77.1),
//! written by hand for prost because there is no `protoc` in the build. Field numbers and types
//! must match that file exactly; the tests at the bottom pin the encoding byte for byte.

/// The gRPC service every method below belongs to.
pub const SERVICE: &str = "signalexchange.SignalExchange";
/// `rpc Send(EncryptedMessage) returns (EncryptedMessage)`.
pub const SEND_PATH: &str = "/signalexchange.SignalExchange/Send";
/// `rpc ConnectStream(stream EncryptedMessage) returns (stream EncryptedMessage)`.
pub const CONNECT_STREAM_PATH: &str = "/signalexchange.SignalExchange/ConnectStream";
/// Stream metadata naming the connecting peer (`proto.HeaderId` in NetBird's constants.go).
pub const HEADER_PEER_ID: &str = "x-wiretrustee-peer-id";
/// Response header the server sends once the peer is registered (`proto.HeaderRegistered`).
pub const HEADER_REGISTERED: &str = "x-wiretrustee-peer-registered";

/// What travels through the server: the sender's and receiver's WireGuard public keys in
/// base64 and a sealed [`Body`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EncryptedMessage {
    /// The sender's WireGuard public key, base64.
    #[prost(string, tag = "2")]
    pub key: String,
    /// The receiver's WireGuard public key, base64.
    #[prost(string, tag = "3")]
    pub remote_key: String,
    /// `nonce(24) || NaCl box` of an encoded [`Body`].
    #[prost(bytes = "vec", tag = "4")]
    pub body: Vec<u8>,
}

/// The sealed content of a message.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Body {
    #[prost(enumeration = "BodyType", tag = "1")]
    pub r#type: i32,
    /// `"ufrag:pwd"` for OFFER and ANSWER, the marshalled candidate for CANDIDATE.
    #[prost(string, tag = "2")]
    pub payload: String,
    #[prost(uint32, tag = "3")]
    pub wg_listen_port: u32,
    #[prost(string, tag = "4")]
    pub net_bird_version: String,
    #[prost(message, optional, tag = "5")]
    pub mode: Option<Mode>,
    #[prost(uint32, repeated, tag = "6")]
    pub features_supported: Vec<u32>,
    #[prost(message, optional, tag = "7")]
    pub rosenpass_config: Option<RosenpassConfig>,
    #[prost(string, optional, tag = "8")]
    pub relay_server_address: Option<String>,
    // Field 9 is reserved in NetBird's proto.
    #[prost(bytes = "vec", optional, tag = "10")]
    pub session_id: Option<Vec<u8>>,
    /// The relay server's IP the sender is connected to: 4 or 16 bytes.
    #[prost(bytes = "vec", optional, tag = "11")]
    pub relay_server_ip: Option<Vec<u8>>,
}

/// `Body.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BodyType {
    Offer = 0,
    Answer = 1,
    Candidate = 2,
    Mode = 4,
    GoIdle = 5,
    Heartbeat = 6,
}

/// `Mode`: the sender's connection mode.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Mode {
    #[prost(bool, optional, tag = "1")]
    pub direct: Option<bool>,
}

/// `RosenpassConfig`: NetBird's post-quantum add-on; peerlink sends it empty, as NetBird does
/// when Rosenpass is off.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RosenpassConfig {
    #[prost(bytes = "vec", tag = "1")]
    pub rosenpass_pub_key: Vec<u8>,
    #[prost(string, tag = "2")]
    pub rosenpass_server_addr: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn encrypted_message_uses_fields_2_3_4() {
        let msg = EncryptedMessage {
            key: "A".into(),
            remote_key: "B".into(),
            body: vec![0xff, 0x00],
        };
        // 0x12 = field 2, wire type 2 (length-delimited); 0x1a = field 3; 0x22 = field 4.
        assert_eq!(
            hex(&msg.encode_to_vec()),
            ["120141", "1a0142", "2202ff00"].concat()
        );
    }

    /// Expected bytes derived by hand from the protobuf wire format; Go's `proto.Marshal` of the
    /// same message with NetBird v0.77.1's generated code gives the identical bytes.
    #[test]
    fn body_fields_encode_with_netbird_numbers() {
        let body = Body {
            r#type: BodyType::Answer as i32,
            payload: "u:p".into(),
            wg_listen_port: 51820,
            net_bird_version: "v".into(),
            mode: Some(Mode { direct: Some(true) }),
            features_supported: vec![1],
            rosenpass_config: Some(RosenpassConfig::default()),
            relay_server_address: Some("r".into()),
            session_id: Some(vec![1, 2, 3, 4, 5]),
            relay_server_ip: Some(vec![127, 0, 0, 1]),
        };
        let expected = [
            "0801",           // field 1 varint: ANSWER = 1
            "1203753a70",     // field 2 "u:p"
            "18ec9403",       // field 3 varint 51820 = 0xca6c -> ec 94 03
            "220176",         // field 4 "v"
            "2a020801",       // field 5 message { field 1 varint true }
            "320101",         // field 6 packed uint32 [1] (proto3 packs repeated scalars)
            "3a00",           // field 7 empty message (present)
            "420172",         // field 8 "r"
            "52050102030405", // field 10 bytes (0x52 = 10 << 3 | 2)
            "5a047f000001",   // field 11 bytes (0x5a = 11 << 3 | 2)
        ]
        .concat();
        assert_eq!(hex(&body.encode_to_vec()), expected);
    }

    #[test]
    fn default_body_is_an_empty_offer() {
        // proto3 omits defaults: an OFFER with nothing set encodes to zero bytes.
        assert!(Body::default().encode_to_vec().is_empty());
        assert_eq!(Body::default().r#type(), BodyType::Offer);
    }

    #[test]
    fn unknown_type_decodes_without_error() {
        // type = 3 (unassigned): prost keeps the raw number; the parser refuses it later.
        let body = Body::decode(&[0x08, 0x03][..]).unwrap();
        assert_eq!(body.r#type, 3);
    }
}
